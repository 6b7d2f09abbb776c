"""lintas.infra.keys: agencies' key pairs.

* :mod:`.exchange`: X25519 pairs, through which a case's data key reaches its agencies;
* :mod:`.signing`: Ed25519 signing keys and the public-key registry.
"""

__all__: list[str] = []
