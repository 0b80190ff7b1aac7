"""Ledger values -> protobuf messages: ``Transaction`` and ``ReferralReward`` (used by the
wallet and recharge servicers), and the enum names both sides share."""

from __future__ import annotations

from gencharge.v1 import common_pb2, transaction_pb2
from gencharge.v1 import wallet_service_pb2 as wallet_pb
from server.core import protoconv
from server.ledger.domain import ReferralReward, Transaction

CATEGORIES: dict[transaction_pb2.TransactionCategory.ValueType, str] = {
    transaction_pb2.TRANSACTION_CATEGORY_WALLET: "wallet",
    transaction_pb2.TRANSACTION_CATEGORY_SERVICE: "service",
}
TXN_TYPES: dict[transaction_pb2.TransactionType.ValueType, str] = {
    transaction_pb2.TRANSACTION_TYPE_CREDIT: "credit",
    transaction_pb2.TRANSACTION_TYPE_DEBIT: "debit",
}
SOURCES: dict[transaction_pb2.TransactionSource.ValueType, str] = {
    transaction_pb2.TRANSACTION_SOURCE_RECHARGE: "recharge",
    transaction_pb2.TRANSACTION_SOURCE_WALLET_TOPUP: "wallet_topup",
    transaction_pb2.TRANSACTION_SOURCE_REFUND: "refund",
    transaction_pb2.TRANSACTION_SOURCE_REFERRAL_REWARD: "referral_reward",
    transaction_pb2.TRANSACTION_SOURCE_AUTOPAY: "autopay",
    transaction_pb2.TRANSACTION_SOURCE_ADJUSTMENT: "adjustment",
    transaction_pb2.TRANSACTION_SOURCE_CASHBACK: "cashback",
}
STATUSES: dict[transaction_pb2.TransactionStatus.ValueType, str] = {
    transaction_pb2.TRANSACTION_STATUS_SUCCESS: "success",
    transaction_pb2.TRANSACTION_STATUS_FAILED: "failed",
    transaction_pb2.TRANSACTION_STATUS_PENDING: "pending",
}
PAYMENT_METHODS: dict[common_pb2.PaymentMethod.ValueType, str] = {
    common_pb2.PAYMENT_METHOD_UPI: "UPI",
    common_pb2.PAYMENT_METHOD_CARD: "Card",
    common_pb2.PAYMENT_METHOD_NET_BANKING: "NetBanking",
    common_pb2.PAYMENT_METHOD_WALLET: "Wallet",
}
REFERRAL_STATUSES: dict[wallet_pb.ReferralRewardStatus.ValueType, str] = {
    wallet_pb.REFERRAL_REWARD_STATUS_PENDING: "pending",
    wallet_pb.REFERRAL_REWARD_STATUS_EARNED: "earned",
    wallet_pb.REFERRAL_REWARD_STATUS_PAID: "paid",
}

CATEGORIES_BY_NAME = {name: value for value, name in CATEGORIES.items()}
TXN_TYPES_BY_NAME = {name: value for value, name in TXN_TYPES.items()}
SOURCES_BY_NAME = {name: value for value, name in SOURCES.items()}
STATUSES_BY_NAME = {name: value for value, name in STATUSES.items()}
PAYMENT_METHODS_BY_NAME = {name: value for value, name in PAYMENT_METHODS.items()}
REFERRAL_STATUSES_BY_NAME = {name: value for value, name in REFERRAL_STATUSES.items()}


def transaction_message(row: Transaction) -> transaction_pb2.Transaction:
    currency = row.currency
    message = transaction_pb2.Transaction(
        txn_id=row.txn_id,
        user_id=row.user_id,
        category=CATEGORIES_BY_NAME[row.category],
        txn_type=TXN_TYPES_BY_NAME[row.txn_type],
        amount=protoconv.money(row.amount, currency),
        service_type=(
            protoconv.USER_TYPES_BY_NAME[row.service_type]
            if row.service_type
            else common_pb2.USER_TYPE_UNSPECIFIED
        ),
        plan_id=row.plan_id or 0,
        offer_id=row.offer_id or 0,
        from_phone_number=row.from_phone_number or "",
        to_phone_number=row.to_phone_number or "",
        source=(
            SOURCES_BY_NAME[row.source]
            if row.source
            else transaction_pb2.TRANSACTION_SOURCE_UNSPECIFIED
        ),
        status=STATUSES_BY_NAME[row.status],
        payment_method=(
            PAYMENT_METHODS_BY_NAME[row.payment_method]
            if row.payment_method
            else common_pb2.PAYMENT_METHOD_UNSPECIFIED
        ),
        payment_transaction_id=row.payment_transaction_id or "",
        created_at=protoconv.timestamp(row.created_at),
        balance_after=protoconv.optional_money(row.balance_after, currency),
        refund_of_txn_id=row.refund_of_txn_id or 0,
    )
    return message


def referral_reward_message(row: ReferralReward) -> wallet_pb.ReferralReward:
    return wallet_pb.ReferralReward(
        reward_id=row.reward_id,
        referrer_id=row.referrer_id,
        referred_id=row.referred_id,
        reward_amount=protoconv.money(row.reward_amount),
        status=REFERRAL_STATUSES_BY_NAME[row.status],
        created_at=protoconv.timestamp(row.created_at),
    )
