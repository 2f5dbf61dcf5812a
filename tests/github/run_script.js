// Runs the body of an actions/github-script step the way that action does
// (an async function of require, github, context, core), with a `github`
// client that speaks GitHub's REST API to the URL in GITHUB_API_URL.
// Usage: node run_script.js SCRIPT_FILE CONTEXT_JSON
"use strict";
const fs = require("fs");

const api = process.env.GITHUB_API_URL;

async function request(method, path, body) {
  const response = await fetch(api + path, {
    method,
    headers: { "content-type": "application/json", authorization: "token fake" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error(`${method} ${path}: ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return { status: response.status, data };
}

const q = (params) => new URLSearchParams(
  Object.entries(params).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)])).toString();
const e = encodeURIComponent;

const issues = {
  listComments: ({ owner, repo, issue_number, per_page, page }) =>
    request("GET", `/repos/${owner}/${repo}/issues/${issue_number}/comments?${q({ per_page, page })}`),
  createComment: ({ owner, repo, issue_number, body }) =>
    request("POST", `/repos/${owner}/${repo}/issues/${issue_number}/comments`, { body }),
  updateComment: ({ owner, repo, comment_id, body }) =>
    request("PATCH", `/repos/${owner}/${repo}/issues/comments/${comment_id}`, { body }),
  addLabels: ({ owner, repo, issue_number, labels }) =>
    request("POST", `/repos/${owner}/${repo}/issues/${issue_number}/labels`, { labels }),
  removeLabel: ({ owner, repo, issue_number, name }) =>
    request("DELETE", `/repos/${owner}/${repo}/issues/${issue_number}/labels/${e(name)}`),
  listForRepo: ({ owner, repo, state, labels, per_page, page }) =>
    request("GET", `/repos/${owner}/${repo}/issues?${q({ state, labels, per_page, page })}`),
  create: ({ owner, repo, ...body }) => request("POST", `/repos/${owner}/${repo}/issues`, body),
  update: ({ owner, repo, issue_number, ...body }) =>
    request("PATCH", `/repos/${owner}/${repo}/issues/${issue_number}`, body),
};

async function paginate(method, params) {
  const per_page = params.per_page || 30;
  const all = [];
  for (let page = 1; ; page++) {
    const { data } = await method({ ...params, per_page, page });
    all.push(...data);
    if (data.length < per_page) return all;
  }
}

const github = { rest: { issues }, paginate };
const context = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
context.repo = { owner: context.owner, repo: context.name };
const core = { info: (m) => console.log(m), setFailed: (m) => { console.error(m); process.exitCode = 1; } };

const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const body = fs.readFileSync(process.argv[2], "utf8");
new AsyncFunction("require", "github", "context", "core", body)(require, github, context, core)
  .catch((error) => { console.error(error.stack || String(error)); process.exit(1); });
