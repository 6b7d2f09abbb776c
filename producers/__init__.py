"""lintas.producers: the SDK an agency system publishes through."""

from lintas.infra.errors import BusUnavailable

from .publisher import Published, Publisher

__all__ = ["BusUnavailable", "Published", "Publisher"]
