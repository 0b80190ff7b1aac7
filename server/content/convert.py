"""ContentService messages <-> content values (pure functions)."""

from __future__ import annotations

from typing import Any, Final

from google.protobuf import json_format

from gencharge.v1 import content_service_pb2 as pb
from server.content.domain import (
    IN_PROGRESS,
    NEW,
    RESOLVED,
    ContactFormEntry,
    ContactFormIn,
    ContentDraft,
    ContentItem,
)
from server.core import protoconv

STATUSES: Final[dict[pb.ContactFormStatus.ValueType, str]] = {
    pb.CONTACT_FORM_STATUS_NEW: NEW,
    pb.CONTACT_FORM_STATUS_IN_PROGRESS: IN_PROGRESS,
    pb.CONTACT_FORM_STATUS_RESOLVED: RESOLVED,
}
STATUS_VALUES: Final = {name: value for value, name in STATUSES.items()}


def draft_of(content: pb.Content) -> ContentDraft:
    body: dict[str, Any] = json_format.MessageToDict(content.body)
    return ContentDraft(
        content_type_id=content.content_type_id,
        title=content.title,
        body=body,
    )


def content_message(item: ContentItem) -> pb.Content:
    message = pb.Content(
        content_id=item.content_id,
        content_type_id=item.content_type_id,
        content_type_name=item.content_type_name,
        title=item.title,
        body=protoconv.struct(item.body),
        updated_at=protoconv.timestamp(item.updated_at),
    )
    if item.created_by is not None:
        message.created_by = item.created_by
    return message


def contents_response(items: list[ContentItem], token: str) -> pb.ListContentResponse:
    return pb.ListContentResponse(
        contents=[content_message(item) for item in items], next_page_token=token
    )


def contact_form_of(request: pb.SubmitContactFormRequest) -> ContactFormIn:
    return ContactFormIn(name=request.name, email=request.email, description=request.description)


def contact_form_message(entry: ContactFormEntry) -> pb.ContactForm:
    return pb.ContactForm(
        contact_form_id=entry.contact_form_id,
        name=entry.name,
        email=entry.email,
        description=entry.description,
        created_at=protoconv.timestamp(entry.created_at),
        status=STATUS_VALUES[entry.status],
        updated_at=protoconv.timestamp(entry.updated_at),
    )


def contact_forms_response(
    entries: list[ContactFormEntry], token: str
) -> pb.ListContactFormsResponse:
    return pb.ListContactFormsResponse(
        contact_forms=[contact_form_message(entry) for entry in entries], next_page_token=token
    )


def status_filter(value: int) -> str | None:
    """ListContactForms' status: UNSPECIFIED is every status."""
    return protoconv.enum_filter("status", value, STATUSES)


def new_status(value: int) -> str | None:
    """UpdateContactForm's status: one of the known values, else None (unset or
    unknown: the domain says so with the request's other violations)."""
    for known, status in STATUSES.items():
        if known == value:
            return status
    return None
