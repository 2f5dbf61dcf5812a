"""Run by tests/test_airflow.py with the Airflow virtualenv's Python: read connections as Airflow does.

argv: connections_prefix, then conn ids. Prints one JSON object: conn id -> what Airflow made of it
(``Connection`` fields, its parsed extras, and for AWS what the amazon provider's own hook does
with them: the AwsConnectionWrapper's role settings and the STS identity of the session it builds).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> int:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

    prefix, *conn_ids = sys.argv[1:]
    backend = SecretsManagerBackend(connections_prefix=prefix, variables_prefix=None, config_prefix=None)
    seen: dict[str, dict[str, Any] | None] = {}
    for conn_id in conn_ids:
        conn = backend.get_connection(conn_id)
        if conn is None:
            seen[conn_id] = None
            continue
        item: dict[str, Any] = {"conn_type": conn.conn_type, "login": conn.login, "password": conn.password,
                "extra": conn.extra_dejson}
        if conn.conn_type == "aws":
            wrapper = AwsConnectionWrapper(conn)
            item["wrapper"] = {"region_name": wrapper.region_name, "role_arn": wrapper.role_arn,
                               "assume_role_method": wrapper.assume_role_method,
                               "assume_role_kwargs": wrapper.assume_role_kwargs}
            # The hook finds the connection through the secrets backend configured in the environment.
            hook = AwsBaseHook(aws_conn_id=conn_id, client_type="sts")
            item["sts_identity"] = hook.get_session().client("sts").get_caller_identity()["Arn"]
        seen[conn_id] = item
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
