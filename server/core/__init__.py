"""The core (bottom room): what every domain and the gRPC wiring use, importing none of
them and no grpc. Configuration (config), PostgreSQL (db: the engine and the unit of
work; dburl; schema), MongoDB (mongo), errors, money, pagination, idempotency keys,
advisory job locks (jobs), encryption (crypto), logs, shared proto conversions
(protoconv), client addresses (peers), outbound messages (messaging) and the handles the
servicers share (resources)."""
