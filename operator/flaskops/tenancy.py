"""Which namespaces may use a PostgresServer, and which brownfield databases a namespace may adopt.

A PostgresServer belongs to the cluster admin and is shared by tenants. Its `spec.allowedNamespaces`
has the shape of Gateway API's `Listener.allowedRoutes.namespaces` (`from: All | Selector`, with a
metav1.LabelSelector), evaluated with Kubernetes' label-selector semantics (matchLabels AND every
matchExpressions requirement; operators In, NotIn, Exists, DoesNotExist). Absent means `from: All`: the
ownership records, not the namespace list, keep tenants' databases apart, and the quick start stays one
`kubectl apply` per object.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

FROM_ALL = "All"
FROM_SELECTOR = "Selector"
NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"  # the DatabaseReady reason when a server refuses a namespace


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether `labels` satisfy a metav1.LabelSelector; an empty selector matches everything.

    Raises ValueError for an operator Kubernetes does not define (the CRD's enum prevents it).
    """
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req.get("key", ""), req.get("operator", ""), list(req.get("values") or [])
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise ValueError(f"label selector operator {op!r} is not In, NotIn, Exists or DoesNotExist")
        if not ok:
            return False
    return True


def admits(allowed: Mapping[str, Any] | None, namespace_labels: Mapping[str, str] | None) -> bool:
    """Whether a PostgresServer's allowedNamespaces admits a namespace with these labels.

    `namespace_labels` None means the namespace is unknown (not yet seen): only `from: All` admits it.
    """
    allowed = allowed or {}
    if allowed.get("from", FROM_ALL) == FROM_ALL:
        return True
    if namespace_labels is None:
        return False
    return selector_matches(allowed.get("selector"), namespace_labels)


def refusal_message(server: str, namespace: str) -> str:
    """What a refused tenant reads: the server and its own namespace, nothing of other tenants."""
    return (
        f"PostgresServer '{server}' does not admit namespace '{namespace}' (its spec.allowedNamespaces); "
        "ask the cluster admin to label the namespace or widen the server's allowedNamespaces"
    )


def adoptable(entries: Iterable[Mapping[str, Any]], namespace: str, dbname: str) -> bool:
    """Whether a PostgresServer's `adoptableDatabases` lets `namespace` adopt the database `dbname`."""
    return any(e.get("namespace") == namespace and e.get("name") == dbname for e in entries)
