-- One wallet recharge, as the server sends it (server/recharge/queries.py
-- WALLET_RECHARGE): one call of gencharge_wallet_recharge (migration 0019) in
-- autocommit, with no number in the request (the payer's own is locked, as in the
-- bench's calls) and a price that depends on no fact about the payer.
-- Variables: -D plan=<plan_id> -D minuser=<id> -D maxuser=<id> -D reward=<rupees>.
-- The caller and the audit event are constants without ':' (pgbench reads ":name" as
-- a variable); the server's event has the same shape plus a timestamp.
\set uid random(:minuser, :maxuser)
\set rid random(1, 9000000000000000000)
SELECT outcome, user_type, first_recharge, payer_phone, phone, txn_id, created_at,
       balance_after, cap_id, valid_from, valid_to, cap_status, cashback_txn_id,
       cashback_created_at, cashback_balance_after
FROM gencharge_wallet_recharge(
    'service-pgbench', 'pgb-' || :client_id || '-' || :rid,
    '/gencharge.v1.RechargeService/Recharge',
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    interval '24 hours', :uid, NULL, NULL, NULL, true, :plan, NULL, 28, 'prepaid',
    10.00, 0.00, 0.00, NULL, 'recharge', CAST(:reward AS numeric(10, 2)),
    CAST('{"actor": "service-pgbench", "table_name": "Transactions", "action_type": "INSERT", "details": {"user_id": 0, "plan_id": 0, "offer_id": null, "amount": "10.00", "phone_number": null, "payment_method": "Wallet"}, "rpc": "/gencharge.v1.RechargeService/Recharge", "request_id": "pgbench", "outcome": "ok", "peer": null}' AS jsonb));
