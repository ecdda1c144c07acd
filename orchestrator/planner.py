"""Find the chain of steps from one format to another, and describe routes and plans."""

from collections import deque

from orchestrator import formats, routes
from orchestrator.errors import UsageError


def _edges(steps):
    graph = {}
    for step in steps:
        graph.setdefault(step.source, []).append(step)
    return graph


def reachable(source, steps=routes.STEPS):
    """Every format reachable from `source`, with the shortest chain to it: {target: [Step, ...]}."""
    graph = _edges(steps)
    chains = {source: []}
    queue = deque([source])
    while queue:
        fmt = queue.popleft()
        for step in graph.get(fmt, ()):
            if step.target not in chains:
                chains[step.target] = chains[fmt] + [step]
                queue.append(step.target)
    del chains[source]
    return chains


def plan(source, to="tflite", steps=routes.STEPS):
    """The shortest chain of steps converting `source` into `to` (ties: declaration order)."""
    formats.get(source)
    formats.get(to)
    if source == to and not any(s.source == s.target == source for s in steps):
        raise UsageError(f"nothing to convert: FROM and TO are both '{source}'")
    direct = [s for s in steps if s.source == source and s.target == to]
    if direct:
        return [direct[0]]
    chains = reachable(source, steps)
    if to not in chains:
        targets = sorted(chains)
        where = ", ".join(targets) if targets else "nothing (no route starts there yet)"
        raise UsageError(f"no route from {source} to {to}; from {source} this tool reaches: {where}")
    return chains[to]


def stacks_of(chain):
    seen = []
    for step in chain:
        if step.stack not in seen:
            seen.append(step.stack)
    return seen


def all_pairs(steps=routes.STEPS):
    pairs = []
    sources = []
    for s in steps:
        if s.source not in sources:
            sources.append(s.source)
    for src in sources:
        for target, chain in reachable(src, steps).items():
            pairs.append((src, target, chain))
    return pairs


def describe_routes(steps=routes.STEPS):
    return [f"{src} -> {dst}  [{', '.join(stacks_of(chain))}]  via {' > '.join(s.name for s in chain)}"
            for src, dst, chain in all_pairs(steps)]


def options_of(chain):
    names = []
    for step in chain:
        for name in step.options:
            if name not in names:
                names.append(name)
    return names


def describe_plan(chain):
    lines = [f"{chain[0].source} -> {chain[-1].target}: {len(chain)} step(s)"]
    for i, step in enumerate(chain, 1):
        lines.append(f"  {i}. {step.name}: {step.source} -> {step.target} in stack {step.stack}"
                     f" (images/{step.stack}/steps/{step.script} {' '.join(step.args)})".rstrip())
    runner_src = routes.RUNNERS.get(chain[0].source)
    runner_dst = routes.RUNNERS.get(chain[-1].target)
    if runner_src and runner_dst:
        lines.append(f"  verify: {chain[0].source} in {runner_src.stack} vs {chain[-1].target} in {runner_dst.stack},"
                     f" compared in {routes.COMPARE.stack}")
    else:
        lines.append("  verify: not available for this pair")
    opts = options_of(chain) + list(routes.VERIFY_OPTIONS)
    lines.append("  options: " + " ".join(f"--{o}" for o in opts))
    return "\n".join(lines)
