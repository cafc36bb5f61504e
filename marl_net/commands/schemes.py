"""``marl-net schemes``: the registries — reward schemes, observation features, tasks."""

from __future__ import annotations

import json

HELP = "list reward schemes, observation features and tasks"


def registries() -> dict[str, list[dict]]:
    import marl_net.feedback_alignment  # noqa: F401  (registers the FA/DFA features; config imports it too)
    from marl_net.observations import DEFAULT_FEATURES, FEATURES
    from marl_net.rewards import REWARDS
    from marl_net.tasks import TASKS

    return {
        "rewards": [
            {"name": s.name, "description": s.description, "requires_ownership": s.ownership}
            for s in REWARDS.values()
        ],
        "observations": [
            {"name": f.name, "description": f.description, "privileged": f.privileged,
             "default": f.name in DEFAULT_FEATURES}
            for f in FEATURES.values()
        ],
        "tasks": [{"name": name, "description": desc} for name, (_, desc) in TASKS.items()],
    }


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the registries as JSON")


def main(args) -> int:
    reg = registries()
    if args.json:
        print(json.dumps(reg, indent=2))
        return 0
    for section, rows in reg.items():
        print(f"{section}:")
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            tags = []
            if r.get("requires_ownership"):
                tags.append(f"ownership={r['requires_ownership']}")
            if r.get("privileged"):
                tags.append("privileged")
            if section == "observations" and r.get("default"):
                tags.append("default")
            suffix = f"  [{', '.join(tags)}]" if tags else ""
            print(f"  {r['name']:<{width}}  {r['description']}{suffix}")
        print()
    return 0
