"""lintas.admission: the platform's only writer of the event log.

* :mod:`.judge`: one decision, the checks in order (the pure rules are in
  :mod:`lintas.contracts.admission` and :mod:`lintas.contracts.authority`);
* :mod:`.cases`: what admission knows of each case (head, ids, consents, policy state);
* :mod:`.service`: partitions, leases, writing, answering.
"""

from __future__ import annotations

from lintas.admission.service import AdmissionService

__all__ = ["AdmissionService"]
