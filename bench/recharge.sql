-- One wallet recharge, as the server runs it (server/recharge/queries.py): the
-- LOCK_AND_CLAIM statement (no number in the request: the payer's own is locked, as
-- in the bench's calls), then the RECHARGE statement, in one transaction.
-- Variables: -D plan=<plan_id> -D minuser=<id> -D maxuser=<id> -D phonebase=<n>
-- -D reward=<rupees>; a user's phone number is phonebase + user_id (see bench/run.py).
-- The caller and the audit event are constants without ':' (pgbench reads ":name" as
-- a variable); the server's event has the same shape plus a timestamp.
\set uid random(:minuser, :maxuser)
\set phone :phonebase + :uid
\set rid random(1, 9000000000000000000)
BEGIN;
WITH target AS (
    SELECT coalesce(CAST(NULL AS text),
                    (SELECT phone_number FROM users WHERE user_id = :uid)) AS phone
),
phone_lock AS (
    SELECT pg_advisory_xact_lock(hashtextextended(target.phone, 7)) FROM target
),
claim AS (
    INSERT INTO idempotency_keys (caller, request_id, rpc, request_hash, expires_at)
    SELECT 'service-pgbench', 'pgb-' || :client_id || '-' || :rid,
        '/gencharge.v1.RechargeService/Recharge',
        'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
        now() + interval '24 hours'
    FROM phone_lock
    ON CONFLICT DO NOTHING
    RETURNING request_id
)
SELECT (SELECT count(*) FROM claim) = 1 AS claimed,
       (SELECT phone FROM target) AS locked_phone,
       payer.user_id, payer.user_type, payer.status, payer.phone_number,
       EXISTS (SELECT 1 FROM transactions earlier
               WHERE earlier.user_id = payer.user_id
                 AND earlier.source IN ('recharge', 'autopay')
                 AND earlier.status IN ('success', 'pending')) AS has_recharged
FROM (SELECT 1) AS one
LEFT JOIN users AS payer ON payer.user_id = :uid;
WITH queue AS (
    SELECT max(valid_to) AS until
    FROM currentactiveplans
    WHERE phone_number = CAST(:phone AS text) AND status IN ('active', 'queued')
      AND valid_to > now()
),
txn AS (
    INSERT INTO transactions (user_id, category, txn_type, amount, service_type, plan_id,
        offer_id, from_phone_number, to_phone_number, source, status, payment_method,
        payment_transaction_id)
    VALUES (:uid, CAST('wallet' AS txn_category_enum), 'debit', 10.00,
        CAST('prepaid' AS user_type_enum), :plan, NULL, CAST(:phone AS text),
        CAST(:phone AS text), CAST('recharge' AS txn_source_enum), 'success',
        CAST('Wallet' AS payment_method_enum), NULL)
    RETURNING txn_id, user_id, category, txn_type, amount, service_type, plan_id, offer_id,
        from_phone_number, to_phone_number, source, status, payment_method,
        payment_transaction_id, created_at, balance_after, currency
),
cap AS (
    INSERT INTO currentactiveplans (user_id, plan_id, phone_number, valid_from, valid_to,
        status)
    SELECT :uid, :plan, CAST(:phone AS text),
        greatest(now(), coalesce(queue.until, now())),
        greatest(now(), coalesce(queue.until, now())) + make_interval(days => 28),
        CAST(CASE WHEN queue.until > now() THEN 'queued' ELSE 'active' END
             AS active_plan_status_enum)
    FROM queue, txn
    RETURNING id, valid_from, valid_to, status
),
reward AS (
    INSERT INTO referralrewards (referrer_id, referred_id, reward_amount)
    SELECT referrer.user_id, buyer.user_id, CAST(:reward AS numeric(10, 2))
    FROM users buyer
    JOIN users referrer ON referrer.referral_code = buyer.referred_by
    CROSS JOIN txn
    WHERE buyer.user_id = :uid
      AND CAST(:reward AS numeric(10, 2)) > 0
      AND NOT EXISTS (
          SELECT 1 FROM transactions earlier
          WHERE earlier.user_id = :uid
            AND earlier.source IN ('recharge', 'autopay')
            AND earlier.status = 'success')
    ON CONFLICT (referred_id) DO NOTHING
    RETURNING reward_id, referrer_id, status
),
idem AS (
    UPDATE idempotency_keys
       SET result = jsonb_build_object('txn_id', txn.txn_id, 'active_plan_id', cap.id)
      FROM txn, cap
     WHERE caller = 'service-pgbench' AND request_id = 'pgb-' || :client_id || '-' || :rid
),
audit AS (
    INSERT INTO audit_outbox (event)
    SELECT jsonb_set(CAST('{"actor": "service-pgbench", "table_name": "Transactions", "action_type": "INSERT", "details": {"user_id": 0, "amount": "10.00", "payment_method": "Wallet"}, "rpc": "/gencharge.v1.RechargeService/Recharge", "request_id": "pgbench", "outcome": "ok", "peer": null}' AS jsonb), '{details,txn_id}', to_jsonb(txn.txn_id))
    FROM txn
)
SELECT txn.*, cap.id AS cap_id, cap.valid_from, cap.valid_to, cap.status AS cap_status,
       reward.reward_id, reward.referrer_id, reward.status AS reward_status
FROM txn CROSS JOIN cap LEFT JOIN reward ON true;
COMMIT;
