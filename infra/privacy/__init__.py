"""lintas.infra.privacy: a child's data, sealed per case.

* :mod:`.casekeys`: the case key store, each case's data key wrapped per agency;
* :mod:`.sealing`: sealing a case's personal fields, and wrapping its data key.
"""

__all__: list[str] = []
