"""The README example, checked with ``mypy --strict`` by scripts/test."""

from dispatch import Dispatch, ErrorEvent

with Dispatch("dispatch.db", daily_spawn_budget_error=5) as d:
    report = d.ingest(ErrorEvent(message="payment declined", source="billing", feature="checkout"))
    print(report.issue.identifier, "new" if report.created else f"seen {report.event_count}x")
    decision = d.request_spawn(report.issue.identifier)
    print(decision.decision, decision.reason or decision.run_id)
    for issue in d.list_issues(spawn_active=True):
        print(issue.identifier, issue.title, issue.priority)
