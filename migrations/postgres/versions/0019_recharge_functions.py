"""A wallet recharge is one server-side function call: one round trip, one commit.

Until this revision a wallet recharge took four round trips in one transaction (BEGIN,
``LOCK_AND_CLAIM``, ``RECHARGE``, COMMIT) and a cashback or a referral reward one or two
more. The server priced the order in Python between the two statements, and the plan
queue on the number had to be read by a statement that started after the number's lock
was held (under READ COMMITTED a statement reads the snapshot it started with).

Three PL/pgSQL functions now hold the writes. Inside a VOLATILE function each statement
takes a fresh snapshot, so a lock taken by one statement protects what the next one
reads, in a single call:

``gencharge_record_recharge(...)``
    Writes a priced recharge, in this order: the ledger debit (the wallet trigger debits
    a ``wallet`` row), the plan period queued behind the plans covering the number (or
    active now), the cashback credit, the ``recharges`` row, the referral reward on the
    buyer's first successful recharge (paid at once to the referrer when earned), the
    idempotency key's result and the audit event (with the ledger row's id and the
    number, which the server may not know: the payer's own when the order names
    none). The caller holds the number's lock and has claimed the key. Externally
    paid recharges record through it too, after the payment gateway authorised them
    (server/recharge/domain.py ``record_external``).

``gencharge_wallet_recharge(...)``
    The whole wallet recharge, in autocommit (one call, one transaction): locks the
    number (the payer's own when the order names none); answers ``replay`` when the
    idempotency key exists; reads the payer after the lock (``no_user``, ``blocked``,
    ``no_phone``); checks what the price was computed from (the payer's user type
    and whether this is their first recharge, only when the plan or offer depends on
    them: ``reprice`` with the facts otherwise; the payer's advisory lock is taken
    first when the first recharge matters, as before); with ``p_write`` false it stops
    there (``checked``: the server refuses the order for its price, after the checks
    that come first); locks the wallet and answers ``insufficient`` when it cannot
    pay; claims the key (``replay`` if a concurrent call won it) and records the
    recharge (``ok``). Every outcome but ``ok`` writes nothing, so the error the
    server answers with leaves nothing behind.

``gencharge_wallet_recharges(...)``
    Group commit (server/recharge/group.py): the wallet recharges of one group
    (parallel arrays; a BatchRecharge stream's in stream order; concurrent unary calls')
    in one transaction. It first takes every lock the group needs in a fixed
    order (number locks by key, then payer locks by key, then wallets by user id, the
    order a single recharge takes them in), so groups and single recharges never wait
    for each other in a cycle; then runs each item as ``gencharge_wallet_recharge``
    does, in order, and returns one row per item (``item`` is its 1-based position). An
    item that does not go through writes nothing and does not stop the others. A
    wallet is locked for the whole group, so its ledger rows get increasing txn_ids in
    the order their balances were computed: ``balance_after`` reads as a running
    balance in txn_id order.

The SQL the server sends is in server/recharge/queries.py; docs/data-model.md lists the
functions.

Revision ID: 0019_recharge_functions
Revises: 0018_queue_end_index
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019_recharge_functions"
down_revision: str | None = "0018_queue_end_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What every function returns about the rows it wrote (NULL when it wrote none).
_WRITTEN = """
    OUT txn_id integer, OUT created_at timestamptz, OUT balance_after numeric,
    OUT cap_id integer, OUT valid_from timestamptz, OUT valid_to timestamptz,
    OUT cap_status text,
    OUT cashback_txn_id integer, OUT cashback_created_at timestamptz,
    OUT cashback_balance_after numeric"""

RECORD = f"""
CREATE FUNCTION gencharge_record_recharge(
    p_caller text, p_request_id text, p_user_id integer, p_from_phone text, p_phone text,
    p_plan_id integer, p_offer_id integer, p_validity integer, p_service_type text,
    p_amount numeric, p_discount numeric, p_cashback numeric, p_bonus jsonb,
    p_category text, p_source text, p_payment_method text, p_payment_id text,
    p_reward_amount numeric, p_audit_event jsonb,
    {_WRITTEN})
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_until timestamptz;
    v_starts timestamptz;
    v_referrer integer;
    v_reward integer;
    v_reward_status text;
    v_txn integer;
BEGIN
    INSERT INTO transactions AS t (user_id, category, txn_type, amount, service_type,
        plan_id, offer_id, from_phone_number, to_phone_number, source, status,
        payment_method, payment_transaction_id)
    VALUES (p_user_id, CAST(p_category AS txn_category_enum), 'debit', p_amount,
        CAST(p_service_type AS user_type_enum), p_plan_id, p_offer_id, p_from_phone,
        p_phone, CAST(p_source AS txn_source_enum), 'success',
        CAST(p_payment_method AS payment_method_enum), p_payment_id)
    RETURNING t.txn_id, t.created_at, t.balance_after
        INTO txn_id, created_at, balance_after;
    v_txn := txn_id;

    -- The queue on the number: the caller holds its lock, and this statement's snapshot
    -- was taken after it was granted.
    SELECT max(c.valid_to) INTO v_until FROM currentactiveplans AS c
     WHERE c.phone_number = p_phone AND c.status IN ('active', 'queued')
       AND c.valid_to > now();
    v_starts := greatest(now(), coalesce(v_until, now()));
    INSERT INTO currentactiveplans AS c (user_id, plan_id, phone_number, valid_from,
        valid_to, status)
    VALUES (p_user_id, p_plan_id, p_phone, v_starts,
        v_starts + make_interval(days => p_validity),
        CAST(CASE WHEN v_until > now() THEN 'queued' ELSE 'active' END
             AS active_plan_status_enum))
    RETURNING c.id, c.valid_from, c.valid_to, CAST(c.status AS text)
        INTO cap_id, valid_from, valid_to, cap_status;

    IF p_cashback > 0 THEN
        INSERT INTO transactions AS t (user_id, category, txn_type, amount, plan_id,
            offer_id, source, status, payment_method)
        VALUES (p_user_id, 'wallet', 'credit', p_cashback, p_plan_id, p_offer_id,
            'cashback', 'success', 'Wallet')
        RETURNING t.txn_id, t.created_at, t.balance_after
            INTO cashback_txn_id, cashback_created_at, cashback_balance_after;
    END IF;

    INSERT INTO recharges (txn_id, active_plan_id, discount, cashback, cashback_txn_id,
        bonus)
    VALUES (txn_id, cap_id, p_discount, p_cashback, cashback_txn_id, p_bonus);

    -- The referrer's reward, once per referred user, on their first successful
    -- recharge (this one is not "earlier"); paid at once when earned.
    IF p_reward_amount > 0 THEN
        INSERT INTO referralrewards AS r (referrer_id, referred_id, reward_amount)
        SELECT referrer.user_id, buyer.user_id, p_reward_amount
          FROM users AS buyer
          JOIN users AS referrer ON referrer.referral_code = buyer.referred_by
         WHERE buyer.user_id = p_user_id
           AND NOT EXISTS (
               SELECT 1 FROM transactions AS earlier
                WHERE earlier.user_id = p_user_id AND earlier.txn_id <> v_txn
                  AND earlier.source IN ('recharge', 'autopay')
                  AND earlier.status = 'success')
        ON CONFLICT (referred_id) DO NOTHING
        RETURNING r.reward_id, r.referrer_id, CAST(r.status AS text)
            INTO v_reward, v_referrer, v_reward_status;
        IF v_reward_status = 'earned' THEN
            INSERT INTO transactions (user_id, category, txn_type, amount, source, status,
                payment_method)
            VALUES (v_referrer, 'wallet', 'credit', p_reward_amount, 'referral_reward',
                'success', 'Wallet');
            UPDATE referralrewards SET status = 'paid' WHERE reward_id = v_reward;
        END IF;
    END IF;

    UPDATE idempotency_keys AS k
       SET result = jsonb_build_object('txn_id', txn_id, 'active_plan_id', cap_id)
     WHERE k.caller = p_caller AND k.request_id = p_request_id;

    IF p_audit_event IS NOT NULL THEN
        INSERT INTO audit_outbox (event)
        VALUES (jsonb_set(jsonb_set(p_audit_event, '{{details,txn_id}}', to_jsonb(txn_id)),
                          '{{details,phone_number}}', to_jsonb(p_phone)));
    END IF;
END;
$fn$"""

WALLET = f"""
CREATE FUNCTION gencharge_wallet_recharge(
    p_caller text, p_request_id text, p_rpc text, p_request_hash text, p_key_ttl interval,
    p_user_id integer, p_phone text, p_assume_user_type text, p_assume_first boolean,
    p_write boolean,
    p_plan_id integer, p_offer_id integer, p_validity integer, p_service_type text,
    p_amount numeric, p_discount numeric, p_cashback numeric, p_bonus jsonb,
    p_source text, p_reward_amount numeric, p_audit_event jsonb,
    OUT outcome text, OUT user_type text, OUT first_recharge boolean,
    OUT payer_phone text, OUT phone text,
    {_WRITTEN})
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_status text;
    v_balance numeric;
    w record;
BEGIN
    phone := coalesce(p_phone,
                      (SELECT u.phone_number FROM users AS u WHERE u.user_id = p_user_id));
    IF phone IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended(phone, 7));
    END IF;
    IF EXISTS (SELECT 1 FROM idempotency_keys AS k
                WHERE k.caller = p_caller AND k.request_id = p_request_id) THEN
        outcome := 'replay';
        RETURN;
    END IF;
    SELECT CAST(u.user_type AS text), CAST(u.status AS text), u.phone_number
      INTO user_type, v_status, payer_phone
      FROM users AS u WHERE u.user_id = p_user_id;
    IF NOT FOUND THEN
        outcome := 'no_user';
        RETURN;
    END IF;
    IF v_status <> 'active' THEN
        outcome := 'blocked';
        RETURN;
    END IF;
    IF phone IS NULL THEN
        outcome := 'no_phone';
        RETURN;
    END IF;
    IF p_assume_first IS NOT NULL THEN
        -- The price depends on the payer's history: serialise their recharges and read
        -- it after the lock (a first recharge just made elsewhere is seen).
        PERFORM pg_advisory_xact_lock(hashtextextended('payer:' || p_user_id, 8));
        first_recharge := NOT EXISTS (
            SELECT 1 FROM transactions AS earlier
             WHERE earlier.user_id = p_user_id
               AND earlier.source IN ('recharge', 'autopay')
               AND earlier.status IN ('success', 'pending'));
    END IF;
    IF (p_assume_user_type IS NOT NULL AND p_assume_user_type <> user_type)
       OR (p_assume_first IS NOT NULL AND p_assume_first <> first_recharge) THEN
        outcome := 'reprice';
        RETURN;
    END IF;
    IF NOT p_write THEN
        outcome := 'checked';
        RETURN;
    END IF;
    SELECT u.wallet_balance INTO v_balance FROM users AS u
     WHERE u.user_id = p_user_id FOR UPDATE;
    IF v_balance < p_amount THEN
        outcome := 'insufficient';
        RETURN;
    END IF;
    INSERT INTO idempotency_keys (caller, request_id, rpc, request_hash, expires_at)
    VALUES (p_caller, p_request_id, p_rpc, p_request_hash, now() + p_key_ttl)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        outcome := 'replay';
        RETURN;
    END IF;
    SELECT * INTO w FROM gencharge_record_recharge(
        p_caller, p_request_id, p_user_id, payer_phone, phone, p_plan_id, p_offer_id,
        p_validity, p_service_type, p_amount, p_discount, p_cashback, p_bonus, 'wallet',
        p_source, 'Wallet', NULL, p_reward_amount, p_audit_event);
    outcome := 'ok';
    txn_id := w.txn_id;
    created_at := w.created_at;
    balance_after := w.balance_after;
    cap_id := w.cap_id;
    valid_from := w.valid_from;
    valid_to := w.valid_to;
    cap_status := w.cap_status;
    cashback_txn_id := w.cashback_txn_id;
    cashback_created_at := w.cashback_created_at;
    cashback_balance_after := w.cashback_balance_after;
END;
$fn$"""

BATCH = """
CREATE FUNCTION gencharge_wallet_recharges(
    p_key_ttl interval, p_reward_amount numeric,
    p_callers text[], p_request_ids text[], p_rpcs text[], p_request_hashes text[],
    p_user_ids integer[], p_phones text[],
    p_assume_user_types text[], p_assume_firsts boolean[], p_writes boolean[],
    p_plan_ids integer[], p_offer_ids integer[], p_validities integer[],
    p_service_types text[], p_amounts numeric[], p_discounts numeric[],
    p_cashbacks numeric[], p_bonuses jsonb[], p_sources text[], p_audit_events jsonb[])
RETURNS TABLE (item integer, outcome text, user_type text, first_recharge boolean,
    payer_phone text, phone text, txn_id integer, created_at timestamptz,
    balance_after numeric, cap_id integer, valid_from timestamptz, valid_to timestamptz,
    cap_status text, cashback_txn_id integer, cashback_created_at timestamptz,
    cashback_balance_after numeric)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_key bigint;
    i integer;
BEGIN
    -- Every lock of the group first, in the order a single recharge takes them.
    FOR v_key IN
        SELECT DISTINCT hashtextextended(coalesce(g.phone, u.phone_number), 7)
          FROM unnest(p_user_ids, p_phones) AS g(user_id, phone)
          LEFT JOIN users AS u ON u.user_id = g.user_id
         WHERE coalesce(g.phone, u.phone_number) IS NOT NULL
         ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(v_key);
    END LOOP;
    FOR v_key IN
        SELECT DISTINCT hashtextextended('payer:' || g.user_id, 8)
          FROM unnest(p_user_ids, p_assume_firsts) AS g(user_id, assume_first)
         WHERE g.assume_first IS NOT NULL
         ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(v_key);
    END LOOP;
    PERFORM 1 FROM users AS u
      WHERE u.user_id = ANY (p_user_ids)
      ORDER BY u.user_id FOR UPDATE;

    FOR i IN 1 .. coalesce(array_length(p_request_ids, 1), 0) LOOP
        RETURN QUERY SELECT i, r.* FROM gencharge_wallet_recharge(
            p_callers[i], p_request_ids[i], p_rpcs[i], p_request_hashes[i], p_key_ttl,
            p_user_ids[i], p_phones[i], p_assume_user_types[i], p_assume_firsts[i],
            p_writes[i], p_plan_ids[i], p_offer_ids[i], p_validities[i],
            p_service_types[i], p_amounts[i], p_discounts[i], p_cashbacks[i],
            p_bonuses[i], p_sources[i], p_reward_amount, p_audit_events[i]) AS r;
    END LOOP;
END;
$fn$"""

UPGRADE = [RECORD, WALLET, BATCH]

DOWNGRADE = [
    "DROP FUNCTION IF EXISTS gencharge_wallet_recharges(interval, numeric, text[], text[],"
    " text[], text[], integer[], text[], text[], boolean[], boolean[], integer[], integer[],"
    " integer[], text[], numeric[], numeric[], numeric[], jsonb[], text[], jsonb[])",
    "DROP FUNCTION IF EXISTS gencharge_wallet_recharge(text, text, text, text, interval,"
    " integer, text, text, boolean, boolean, integer, integer, integer, text, numeric,"
    " numeric, numeric, jsonb, text, numeric, jsonb)",
    "DROP FUNCTION IF EXISTS gencharge_record_recharge(text, text, integer, text, text,"
    " integer, integer, integer, text, numeric, numeric, numeric, jsonb, text, text, text,"
    " text, numeric, jsonb)",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
