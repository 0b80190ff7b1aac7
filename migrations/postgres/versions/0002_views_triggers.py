"""Views (DDS 6.1), functions (DDS 7.1) and triggers (DDS 8.1).

DDS 7.1 and 8.1 define the same functions twice with different trigger names; one
trigger per purpose is created here, named as in DDS 8.1 (the section that lists all
five). ``update_wallet_balance`` replaces the DDS check-then-update (which races) with
one atomic conditional UPDATE in a BEFORE trigger that also records ``balance_after``;
see docs/data-model.md.

Revision ID: 0002_views_triggers
Revises: 0001_core_tables
Create Date: 2025-11-10
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002_views_triggers"
down_revision: str | None = "0001_core_tables"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS: dict[str, str] = {
    "user_permissions_v": """
        SELECT
            u.user_id,
            u.name AS user_name,
            r.role_name,
            p.resource AS permission_name,
            p.read,
            p.write,
            p.delete,
            p.edit
        FROM users u
        JOIN roles r ON u.role_id = r.role_id
        JOIN rolepermissions rp ON r.role_id = rp.role_id
        JOIN permissions p ON rp.permission_id = p.permission_id
    """,
    "transaction_summary_v": """
        SELECT
            t.txn_id,
            t.user_id,
            u.name AS user_name,
            t.category,
            t.txn_type,
            t.amount,
            t.service_type,
            p.plan_name,
            t.status AS transaction_status,
            t.payment_method,
            t.created_at
        FROM transactions t
        JOIN users u ON t.user_id = u.user_id
        LEFT JOIN plans p ON t.plan_id = p.plan_id
        WHERE t.status IS NOT NULL
    """,
    "active_plans_v": """
        SELECT
            cap.id,
            cap.user_id,
            u.name AS user_name,
            cap.plan_id,
            p.plan_name,
            cap.phone_number,
            cap.valid_from,
            cap.valid_to,
            cap.status AS plan_status
        FROM currentactiveplans cap
        JOIN users u ON cap.user_id = u.user_id
        JOIN plans p ON cap.plan_id = p.plan_id
        WHERE cap.status = 'active'
    """,
}

FUNCTIONS: dict[str, str] = {
    # DDS 7.1 / 8.1, verbatim.
    "set_transaction_timestamp": """
        BEGIN
            NEW.created_at = NOW();
            RETURN NEW;
        END;
    """,
    # Replaces the DDS version (see module docstring and docs/data-model.md).
    # SQLSTATE GC001 = insufficient wallet balance; GC002 = final ledger row changed.
    "update_wallet_balance": """
        DECLARE
            moves_wallet boolean;
            new_balance numeric(10, 2);
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF OLD.status <> 'pending' THEN
                    -- success/failed rows are final: the money-defining columns and
                    -- the status are immutable.
                    IF NEW.status IS DISTINCT FROM OLD.status
                       OR NEW.user_id IS DISTINCT FROM OLD.user_id
                       OR NEW.category IS DISTINCT FROM OLD.category
                       OR NEW.txn_type IS DISTINCT FROM OLD.txn_type
                       OR NEW.amount IS DISTINCT FROM OLD.amount
                       OR NEW.currency IS DISTINCT FROM OLD.currency
                       OR NEW.balance_after IS DISTINCT FROM OLD.balance_after THEN
                        RAISE EXCEPTION 'transaction % is % and cannot be changed',
                            OLD.txn_id, OLD.status
                            USING ERRCODE = 'GC002';
                    END IF;
                    RETURN NEW;
                END IF;
            END IF;

            -- INSERT, or UPDATE of a pending row: the trigger owns balance_after.
            NEW.balance_after := NULL;
            moves_wallet := NEW.category = 'wallet' AND NEW.status = 'success';
            IF NOT moves_wallet THEN
                RETURN NEW;
            END IF;

            IF NEW.txn_type = 'credit' THEN
                UPDATE users
                   SET wallet_balance = wallet_balance + NEW.amount,
                       updated_at = now()
                 WHERE user_id = NEW.user_id
                RETURNING wallet_balance INTO new_balance;
            ELSE
                UPDATE users
                   SET wallet_balance = wallet_balance - NEW.amount,
                       updated_at = now()
                 WHERE user_id = NEW.user_id
                   AND wallet_balance >= NEW.amount
                RETURNING wallet_balance INTO new_balance;
            END IF;

            IF NOT FOUND THEN
                IF NOT EXISTS (SELECT 1 FROM users WHERE user_id = NEW.user_id) THEN
                    RAISE EXCEPTION 'user_id % does not exist', NEW.user_id
                        USING ERRCODE = 'foreign_key_violation';
                END IF;
                RAISE EXCEPTION 'insufficient wallet balance for user_id %', NEW.user_id
                    USING ERRCODE = 'GC001';
            END IF;

            NEW.balance_after := new_balance;
            RETURN NEW;
        END;
    """,
    # DDS 7.1 / 8.1, verbatim.
    "check_plan_expiry": """
        BEGIN
            IF NEW.valid_to < NOW() THEN
                NEW.status = 'expired';
            END IF;
            RETURN NEW;
        END;
    """,
    # DDS 8.1, verbatim.
    "set_notification_timestamp": """
        BEGIN
            NEW.timestamp = NOW();
            RETURN NEW;
        END;
    """,
    # DDS 8.1, verbatim.
    "set_referral_reward_status": """
        BEGIN
            IF EXISTS (SELECT 1 FROM users WHERE user_id = NEW.referred_id AND status = 'active')
            THEN
                NEW.status = 'earned';
            ELSE
                NEW.status = 'pending';
            END IF;
            RETURN NEW;
        END;
    """,
}

# (trigger name, timing and events, table, function). BEFORE triggers on the same
# table fire in name order: transaction_timestamp_trigger runs before
# wallet_balance_trigger.
TRIGGERS: list[tuple[str, str, str, str]] = [
    ("transaction_timestamp_trigger", "BEFORE INSERT", "transactions", "set_transaction_timestamp"),
    ("wallet_balance_trigger", "BEFORE INSERT OR UPDATE", "transactions", "update_wallet_balance"),
    (
        "plan_expiry_trigger",
        "BEFORE INSERT OR UPDATE",
        "currentactiveplans",
        "check_plan_expiry",
    ),
    (
        "notification_timestamp_trigger",
        "BEFORE INSERT",
        "notifications",
        "set_notification_timestamp",
    ),
    (
        "referral_reward_status_trigger",
        "BEFORE INSERT",
        "referralrewards",
        "set_referral_reward_status",
    ),
]


def upgrade() -> None:
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")
    for name, body in FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn${body}$fn$")
    for trigger, timing, table, function in TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {trigger} {timing} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}()"
        )


def downgrade() -> None:
    for trigger, _timing, table, _function in reversed(TRIGGERS):
        op.execute(f"DROP TRIGGER {trigger} ON {table}")
    for name in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION {name}()")
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
