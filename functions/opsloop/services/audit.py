"""Verifying the tamper-evident audit trail and the provenance of policy versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..domain import audit as audit_domain
from .ports import Store


@dataclass
class AuditReport:
    ok: bool
    chains: dict[str, int] = field(default_factory=dict)  # chain -> entries verified
    breaks: list[dict[str, Any]] = field(default_factory=list)  # the first broken link of each bad chain
    policies: list[dict[str, Any]] = field(default_factory=list)  # versions whose provenance fails

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "chains": self.chains, "breaks": self.breaks, "policies": self.policies}


def verify_audit_chain(store: Store) -> AuditReport:
    """Check every chain link by link, entries outside any chain, and each version's params hash."""
    heads = store.audit.chains()
    report = AuditReport(ok=True)
    by_id: dict[str, dict[str, Any]] = {}
    for chain, head in sorted(heads.items()):
        entries = store.audit.entries(chain)
        by_id.update(entries)
        report.chains[chain] = len(entries)
        broken = audit_domain.verify(chain, entries, head)
        if broken is not None:
            report.breaks.append(broken.to_dict())
    for doc_id, stray in store.audit.unchained(set(heads)):
        chain = str(stray.get("chain") or "(none)")
        report.breaks.append(audit_domain.Break(chain, stray.get("seq"), doc_id,
                                                "entry belongs to no known chain").to_dict())
    for doc in store.policies.all():
        ref = f"{doc.get('id')}@{doc.get('version')}"
        problem = None
        if audit_domain.digest(doc.get("params") or {}) != doc.get("paramsHash"):
            problem = "params do not match paramsHash: they were changed after creation"
        else:
            created = doc.get("createdByAudit") or {}
            entry = by_id.get(str(created.get("id")))
            if entry is None:
                problem = "the audit entry that created this version is missing"
            elif entry.get("hash") != created.get("hash") or entry.get("paramsHash") != doc.get("paramsHash"):
                problem = "the creating audit entry does not match this version"
        if problem:
            report.policies.append({"policy": ref, "problem": problem})
    report.ok = not report.breaks and not report.policies
    return report
