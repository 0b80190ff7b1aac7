"""Server interceptors: request context and error mapping (auth, RBAC, audit follow)."""
