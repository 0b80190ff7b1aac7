"""The gRPC wiring (middle room): the grpc.aio server and its lifecycle (app), which
services are registered and how their servicers are built (services), and the
interceptors (request ids, access log and error mapping; authentication, RBAC and the
audit scope). It imports every domain's servicer; no domain imports it."""
