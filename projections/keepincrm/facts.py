"""What the client takes from the API notes: how each request is spelled.

The notes grade each fact *seen* (in working production code), *schema* (only
in the published schema) or *guess*. Every choice graded *schema* or *guess*
lives in one named constant or function here, so that checking it against a
live account and fixing it is a one-line change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from projections.keepincrm.transport import JSONObject, QueryParams

# seen (KeepinCRM's own OpenCart module): both go in the query string of the
# create call, not in its body. `ignore_price_list` keeps the line prices we
# send instead of the CRM's price list; `products_total_as_total=false` keeps
# the total we send instead of the sum of the lines. guess: a PATCH that
# carries lines is priced by the same rule, so it sends the same query.
CREATE_DEAL_QUERY: Final[Mapping[str, str]] = {
    "ignore_price_list": "true",
    "products_total_as_total": "false",
}

# guess: lists answer 25 items a page; whether `per_page` is honoured is
# unconfirmed, so no size is asked. Paging follows `pagination.total_pages`,
# whatever the size. To ask one: ("per_page", "100").
PAGE_SIZE_PARAM: Final[tuple[str, str] | None] = None

# seen: `q[trigram_idx_cont]` finds clients by a phone (or part of one).
CLIENT_PHONE_FILTER: Final = "trigram_idx_cont"


def custom_field_filter(field: str, value: str) -> tuple[str, str]:
    """The query parameter that selects deals whose custom field `field` is `value`.

    seen: the Ransack filter `q[custom_fields_jcont][<key>]`. guess: which of the
    three spellings of a custom field's name it takes (`field_<id>`, the machine
    key `<slug>_<id>` that reads return, or the title); `field` is passed as
    configured, so the spelling is the caller's setting.
    """
    return (f"q[custom_fields_jcont][{field}]", value)


def close_as_failed_fields() -> JSONObject:
    """The fields that close a deal as failed, to merge into a PATCH body.

    guess: no source shows how the API closes a deal. The read shape of
    `GET /agreements/{id}` has `result` (null, "successful" or "failed"), so we
    infer that a PATCH setting `result` to "failed" does it; it may instead take
    a stage of the funnel, or a call of its own.
    """
    return {"result": "failed"}


def nested_line_changes(
    *,
    changed: Mapping[int, Mapping[str, Any]] | None = None,
    removed: Iterable[int] = (),
    added: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """`jobs_attributes` for a PATCH that changes a deal's lines by their ids.

    schema: Rails nested attributes, never seen run live. An item with `id`
    changes that line, `id` with `_destroy` removes it, and one without `id`
    adds a line. Re-sending lines without their ids duplicates them.
    """
    return [
        *({**fields, "id": line_id} for line_id, fields in (changed or {}).items()),
        *({"id": line_id, "_destroy": True} for line_id in removed),
        *(dict(line) for line in added),
    ]


def ransack_params(filters: Mapping[str, Any]) -> QueryParams:
    """Spell keyword filters as Ransack query parameters.

    `title_eq="№ 1"` becomes `q[title_eq]=№ 1`; a mapping value nests one level
    (`custom_fields_jcont={"field_7": "1"}`), a list repeats (`q[id_in][]=`).
    """
    params: QueryParams = []
    for predicate, value in filters.items():
        key = f"q[{predicate}]"
        if isinstance(value, Mapping):
            params.extend(
                (f"{key}[{sub}]", _query_value(v)) for sub, v in value.items()
            )
        elif isinstance(value, list | tuple):
            params.extend((f"{key}[]", _query_value(v)) for v in value)
        else:
            params.append((key, _query_value(value)))
    return params


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
