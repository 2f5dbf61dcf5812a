"""The fleet view: the Connections page rendered from the declarations and the store."""
