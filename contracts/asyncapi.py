"""An AsyncAPI 3.0 document of the whole bus, generated from the registry.

Channels are the subject patterns: per family, one channel for each national agency and
each platform service (the watchdog) as target, one for any village, one for any partner
abroad, and one for broadcasts. Their messages are every registered version of the
family's types; payloads are the envelope with ``data`` referring to the committed JSON
Schema of that type and version.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lintas.contracts import registry
from lintas.contracts._base import EventData
from lintas.contracts.agencies import BROADCAST, NATIONAL_AGENCIES, PLATFORM_SERVICES, agency_name
from lintas.contracts.subjects import ROOT

__all__ = ["asyncapi_document"]

_TARGETS: dict[str, dict[str, str]] = {
    **{
        agency: {"token": agency, "title": agency_name(agency)}
        for agency in sorted(NATIONAL_AGENCIES)
    },
    # A platform service is addressed only by answers to what it sent (KPAI's review of
    # the watchdog's escalation).
    **{
        service: {"token": service, "title": agency_name(service)}
        for service in sorted(PLATFORM_SERVICES)
    },
    "village": {"token": "{village}", "title": "a village (desa-<Kemendagri code>)"},
    "partner": {"token": "{partner}", "title": "a partner abroad (<country code>-<agency>)"},
    BROADCAST: {"token": BROADCAST, "title": "every participant (broadcast)"},
}

_PARAMETERS = {
    "source": {
        "description": "agency id of the publisher: a national agency, desa-<code>, <cc>-<agency> "
        "or a platform service (watchdog)"
    },
    "action": {"description": "the action of the event type, e.g. requested"},
    "caseId": {"description": "pseudonymous case id: C + 26 Crockford base32 characters"},
    "village": {"description": "a village's agency id, desa-<Kemendagri village code>"},
    "partner": {"description": "a partner abroad, <ISO 3166 alpha-2>-<agency>, e.g. my-jkm"},
}


def _message_id(model: type[EventData]) -> str:
    return f"{model.TYPE}.v{model.VERSION}"


def _message(model: type[EventData], newest: bool, schema_base: str) -> dict[str, Any]:
    return {
        "name": model.TYPE,
        "title": f"{model.TYPE} v{model.VERSION}",
        "summary": (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else "",
        "contentType": "application/json",
        "x-lintas-newest-version": newest,
        "payload": {
            "allOf": [
                {"$ref": f"{schema_base}/envelope.json"},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": model.TYPE},
                        "dataversion": {"const": model.VERSION},
                        "dataschema": {
                            "const": f"lintas:schemas/{model.TYPE}/v{model.VERSION}.json"
                        },
                        "data": {"$ref": f"{schema_base}/{model.TYPE}/v{model.VERSION}.json"},
                    },
                },
            ]
        },
    }


def asyncapi_document(
    version: str,
    models: Iterable[type[EventData]] | None = None,
    schema_base: str = "../contracts/schemas",
) -> dict[str, Any]:
    """The document; ``schema_base`` is where the JSON Schemas are, relative to it."""
    model_list = list(models if models is not None else registry.all_models())
    newest = {m.TYPE: max(x.VERSION for x in model_list if x.TYPE == m.TYPE) for m in model_list}
    messages = {
        _message_id(m): _message(m, newest[m.TYPE] == m.VERSION, schema_base) for m in model_list
    }
    families = sorted({m.family() for m in model_list})
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for family in families:
        family_messages = {
            _message_id(m): {"$ref": f"#/components/messages/{_message_id(m)}"}
            for m in model_list
            if m.family() == family
        }
        for key, target in _TARGETS.items():
            channel = f"{family}.to.{key}"
            params = ["source", "action", "caseId"]
            if target["token"].startswith("{"):
                params.append(target["token"].strip("{}"))
            channels[channel] = {
                "address": f"{ROOT}.{{source}}.{target['token']}.{family}.{{action}}.{{caseId}}",
                "title": f"{family} events addressed to {target['title']}",
                "parameters": {p: {"$ref": f"#/components/parameters/{p}"} for p in params},
                "messages": family_messages,
            }
            operations[f"receive.{channel}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": f"{target['title']}: consume {family} events addressed to it",
            }
            operations[f"send.{channel}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel}"},
                "summary": f"publish {family} events to {target['title']} "
                "(only as oneself: lintas.<own id>.>)",
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "lintas event bus",
            "version": version,
            "description": (
                "Interagency referral events for children of Indonesian migrant workers, on "
                "NATS JetStream (stream LINTAS, subjects lintas.>). Every message is a "
                "CloudEvents 1.0 envelope in structured JSON mode; NATS header Nats-Msg-Id "
                "repeats the envelope id. Generated by `lintas contracts docs`: do not edit."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "parameters": _PARAMETERS},
    }
