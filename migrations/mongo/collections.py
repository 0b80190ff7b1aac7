"""Names and `$jsonSchema` validators of the GenCharge MongoDB collections (DDS 4.2, 5.2).

The validators keep the meaning of DDS section 5.2 (same required fields, types, enums
and e-mail pattern). Additions, all of them optional fields with a type only:
``created_at``/``updated_at`` as BSON dates where DDS 4.2 has a timestamp, and
``BackupRestoreLogs.expires_at`` (the TTL field of DDS 2.4). ``ContentTypes`` and
``ReportTypes`` are the lookup collections the DDS 6.2 views join with.

These constants are what the migration steps apply. A step, once released, must keep
doing what it did: a later change to a validator is a new step that calls
``collMod`` with the new schema, not an edit of an old step's meaning.
"""

from __future__ import annotations

from typing import Any, Final

Document = dict[str, Any]

AUDIT_LOG: Final = "AuditLog"
CONTACT_FORM: Final = "ContactForm"
BACKUP_RESTORE_LOGS: Final = "BackupRestoreLogs"
REPORTS_LOGS: Final = "ReportsLogs"
CONTENT: Final = "Content"
CONTENT_TYPES: Final = "ContentTypes"
REPORT_TYPES: Final = "ReportTypes"
#: Step 0006: sequence counters (``{_id: "<Collection>.<field>", seq: <last id>}``),
#: e.g. the next ``Content.content_id``.
COUNTERS: Final = "Counters"
#: The counter documents (step 0008 creates them, so a first use never races an
#: upsert), each with the collection and field whose highest value it starts from.
CONTENT_ID_COUNTER: Final = "Content.content_id"
REPORT_ID_COUNTER: Final = "ReportsLogs.report_id"
SEQUENCES: Final[dict[str, tuple[str, str]]] = {
    CONTENT_ID_COUNTER: (CONTENT, "content_id"),
    REPORT_ID_COUNTER: (REPORTS_LOGS, "report_id"),
}

RECENT_AUDIT_LOGS_VIEW: Final = "recent_audit_logs_v"
CONTENT_SUMMARY_VIEW: Final = "content_summary_v"
RECENT_REPORTS_VIEW: Final = "recent_reports_v"

#: Where applied migration steps are recorded ({_id: step_id, applied_at}).
SCHEMA_MIGRATIONS: Final = "_schema_migrations"

#: DDS 5.2 ContactForm e-mail pattern, verbatim.
EMAIL_PATTERN: Final = r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$"

AUDIT_ACTION_TYPES: Final = ("INSERT", "UPDATE", "DELETE")
#: Step 0005: denied and failed calls are audited as security events.
AUDIT_ACTION_TYPES_WITH_SECURITY: Final = (*AUDIT_ACTION_TYPES, "SECURITY")
AUDIT_OUTCOMES: Final = ("ok", "denied", "failed")
BACKUP_JOB_TYPES: Final = ("backup", "restore", "scheduled")
BACKUP_JOB_STATUSES: Final = ("started", "progress", "completed", "failed")
REPORT_FORMATS: Final = ("pdf", "excel", "csv")
#: Step 0006: where the handling of a contact form stands (ContentService).
CONTACT_FORM_STATUSES: Final = ("new", "in_progress", "resolved")


def _schema(required: list[str], properties: Document) -> Document:
    return {
        "$jsonSchema": {
            "bsonType": "object",
            "required": required,
            "properties": properties,
        }
    }


def _string(description: str) -> Document:
    return {"bsonType": "string", "description": description}


def _int(description: str) -> Document:
    return {"bsonType": "int", "description": description}


def _date(description: str) -> Document:
    return {"bsonType": "date", "description": description}


def _enum(values: tuple[str, ...]) -> Document:
    return {"enum": list(values), "description": "must be one of " + ", ".join(values)}


VALIDATORS: Final[dict[str, Document]] = {
    AUDIT_LOG: _schema(
        ["user_id", "table_name", "action_type"],
        {
            "audit_id": _string("must be a string"),
            "user_id": _string("must be a string (ObjectId) and is required"),
            "table_name": _string("must be a string and is required"),
            "action_type": _enum(AUDIT_ACTION_TYPES),
            "created_at": _date("must be a date"),
        },
    ),
    CONTACT_FORM: _schema(
        ["id", "email"],
        {
            "id": _string("must be a string (ObjectId) and is required"),
            "email": {
                "bsonType": "string",
                "pattern": EMAIL_PATTERN,
                "description": "must be a valid email address",
            },
            "created_at": _date("must be a date"),
        },
    ),
    BACKUP_RESTORE_LOGS: _schema(
        ["job_id", "job_type", "status"],
        {
            "log_id": _string("must be a string"),
            "job_id": _string("must be a string and is required"),
            "job_type": _enum(BACKUP_JOB_TYPES),
            "status": _enum(BACKUP_JOB_STATUSES),
            "created_at": _date("must be a date"),
            "expires_at": _date("must be a date; the log expires then (TTL)"),
        },
    ),
    REPORTS_LOGS: _schema(
        ["report_type_id", "format"],
        {
            "report_id": _int("must be an integer"),
            "report_type_id": _int("must be an integer and is required"),
            "format": _enum(REPORT_FORMATS),
            "created_at": _date("must be a date"),
        },
    ),
    CONTENT: _schema(
        ["content_type_id", "title"],
        {
            "content_id": _int("must be an integer"),
            "content_type_id": _int("must be an integer and is required"),
            "title": _string("must be a string and is required"),
            "updated_at": _date("must be a date"),
        },
    ),
    CONTENT_TYPES: _schema(
        ["content_type_id", "content_type_name"],
        {
            "content_type_id": _int("must be an integer and is required"),
            "content_type_name": _string("must be a string and is required"),
        },
    ),
    REPORT_TYPES: _schema(
        ["report_type_id", "report_type_name"],
        {
            "report_type_id": _int("must be an integer and is required"),
            "report_type_name": _string("must be a string and is required"),
        },
    ),
}

#: The AuditLog validator from step ``0005_audit_security_events`` on. ``VALIDATORS``
#: keeps the DDS 5.2 schema that step 0001 applies (a released step keeps its meaning);
#: this one keeps the same required fields and types and adds: ``action_type``
#: SECURITY (denied and failed calls), and the optional fields the audit relay writes
#: (``outcome`` ok/denied/failed, ``rpc``, ``request_id``, ``peer``, ``details``).
AUDIT_LOG_VALIDATOR: Final[Document] = _schema(
    ["user_id", "table_name", "action_type"],
    {
        "audit_id": _string("must be a string"),
        "user_id": _string("must be a string (ObjectId) and is required"),
        "table_name": _string("must be a string and is required"),
        "action_type": _enum(AUDIT_ACTION_TYPES_WITH_SECURITY),
        "created_at": _date("must be a date"),
        "details": {"bsonType": "object", "description": "must be an object"},
        "rpc": _string("must be a string"),
        "request_id": _string("must be a string"),
        "outcome": _enum(AUDIT_OUTCOMES),
        "peer": {"bsonType": ["string", "null"], "description": "must be a string or null"},
    },
)


#: The ContactForm validator from step ``0006_content_contact_forms`` on: the DDS 5.2
#: required fields, e-mail pattern and types (step 0001), plus the optional fields
#: ContentService writes: ``name`` and ``description`` strings, ``status`` (a document
#: without one is ``new``) and ``updated_at`` (the last status change).
CONTACT_FORM_VALIDATOR: Final[Document] = _schema(
    ["id", "email"],
    {
        "id": _string("must be a string (ObjectId) and is required"),
        "email": {
            "bsonType": "string",
            "pattern": EMAIL_PATTERN,
            "description": "must be a valid email address",
        },
        "name": _string("must be a string"),
        "description": _string("must be a string"),
        "status": _enum(CONTACT_FORM_STATUSES),
        "created_at": _date("must be a date"),
        "updated_at": _date("must be a date"),
    },
)

#: The Content validator from step ``0006_content_contact_forms`` on: DDS 5.2 (step
#: 0001) plus the types of the other DDS 4.2 fields, optional: ``body`` an object,
#: ``created_by`` an integer.
CONTENT_VALIDATOR: Final[Document] = _schema(
    ["content_type_id", "title"],
    {
        "content_id": _int("must be an integer"),
        "content_type_id": _int("must be an integer and is required"),
        "title": _string("must be a string and is required"),
        "body": {"bsonType": "object", "description": "must be an object"},
        "created_by": {"bsonType": ["int", "null"], "description": "must be an integer"},
        "updated_at": _date("must be a date"),
    },
)

#: The AuditLog validator from step ``0007_audit_queries`` on: the 0005 schema plus the
#: optional ``customer_id`` (the customer an event is about; null for none) that
#: ``ListAuditLogs`` filters on.
AUDIT_LOG_VALIDATOR_WITH_CUSTOMER: Final[Document] = _schema(
    ["user_id", "table_name", "action_type"],
    {
        **AUDIT_LOG_VALIDATOR["$jsonSchema"]["properties"],
        "customer_id": {
            "bsonType": ["int", "long", "null"],
            "description": "must be an integer (a users.user_id) or null",
        },
    },
)
