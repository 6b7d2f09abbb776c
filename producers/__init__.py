"""lintas.producers: the SDK an agency system publishes through."""

from lintas.infra.errors import BusUnavailable

from .publisher import Published, Publisher, PublishRejected

__all__ = ["BusUnavailable", "PublishRejected", "Published", "Publisher"]
