"""Find the chain of steps from one format to another, and describe routes and plans."""

from collections import deque

from orchestrator import formats, routes
from orchestrator.errors import UsageError


def _edges(steps):
    graph = {}
    for step in steps:
        graph.setdefault(step.source, []).append(step)
    return graph


def when_values(step):
    """The values of its step-choosing option that choose `step` (None: the option not given)."""
    value = step.when[1]
    return value if isinstance(value, tuple) else (value,)


def chosen(step, given):
    name = step.when[0]
    return str(given.get(name, routes.OPTIONS[name].default)) in {str(v) for v in when_values(step)}


def choosing_values(name, source, to, steps=routes.STEPS, producer=None):
    """The values of step-choosing option `name` that each give a route from `source` to `to`, in step order."""
    found = []
    for step in steps:
        for value in (v for v in when_values(step) if v is not None) if step.chosen_by(name) else ():
            if value in found:
                continue
            try:
                chain = plan(source, to, steps, {name: value}, producer, explain=False)
            except UsageError:
                continue
            if any(s.chosen_by(name) for s in chain):  # the value chose a step of the route
                found.append(value)
    return found


def applicable(steps, given=None, source=None, producer=None):
    """Steps whose `when` condition holds for the given options (an absent option has its default), and, for the
    steps reading the user's file (from `source`), whose stack reads what `producer` wrote (stack.json "reads")."""
    from orchestrator import images

    given = {k.replace("-", "_"): v for k, v in (given or {}).items()}
    stacks = images.discover_stacks() if producer is not None else {}
    keep = []
    for step in steps:
        if step.when and not chosen(step, given):
            continue
        if producer is not None and step.source == source and not reads(stacks[step.stack], step, producer):
            continue
        keep.append(step)
    return tuple(keep)


def reads(stack, step, producer):
    """Whether `step` (in `stack`) takes a file `producer` wrote: its stack reads it, or the step takes files
    newer than its stack reads (Step.reads_newer) and this one is newer."""
    from orchestrator.producers import parse_range

    if stack.reads_file(producer):
        return True
    text = dict(stack.reads).get(producer.library)
    return bool(step.reads_newer and text and producer.release and producer.release > parse_range(text)[1])


def unreadable(source, producer, steps=routes.STEPS):
    """Why no stack reads a file `producer` wrote (naming its version and what the stacks read), or None."""
    from orchestrator import images

    if producer is None:
        return None
    stacks = images.discover_stacks()
    ranges = {name: dict(stacks[name].reads)[producer.library] for name in {s.stack for s in steps if s.source == source}
              if producer.library in dict(stacks[name].reads)}
    if not ranges or any(stacks[name].reads_file(producer) for name in ranges):
        return None  # no stack says which versions it reads, or one reads this one
    shown = "; ".join(f"{name} {text}" for name, text in sorted(ranges.items()))
    return f"written by {producer.describe()}, which no stack reads ({producer.library} files: {shown})"


def newest_if_unrecorded(source, producer, steps=routes.STEPS):
    """A file whose producer records no version (Producer.release None) is read by the newest stack reading
    `source` files of that library: the producer is returned as that stack's newest version, saying so."""
    from orchestrator import images
    from orchestrator.producers import Producer, parse_range

    if producer is None or producer.release is not None:
        return producer
    stacks = images.discover_stacks()
    highs = [parse_range(dict(stacks[s.stack].reads)[producer.library])[1] for s in steps
             if s.source == source and producer.library in dict(stacks[s.stack].reads)]
    if not highs:
        return producer
    high = max(highs)
    return Producer(producer.library, f"{high[0]}.{high[1]}",
                    {**producer.details, "assumed": "the file records no version: read by the newest stack"})


def reachable(source, steps=routes.STEPS):
    """Every format reachable from `source`, with the shortest chain to it: {target: [Step, ...]}."""
    graph = _edges(steps)
    chains = {source: []}
    queue = deque([source])
    while queue:
        fmt = queue.popleft()
        if fmt != source and not formats.get(fmt).transit:
            continue  # e.g. no keras -> tfjs -> keras_saved_model detours
        for step in graph.get(fmt, ()):
            if step.target not in chains:
                chains[step.target] = chains[fmt] + [step]
                queue.append(step.target)
    del chains[source]
    return chains


def plan(source, to="tflite", steps=routes.STEPS, given=None, producer=None, explain=True):
    """The shortest chain of steps converting `source` into `to` (ties: declaration order).
    `given` options choose between alternative steps (e.g. --converter); `producer` (who wrote the input file)
    keeps the first step in a stack that reads it."""
    formats.get(source)
    formats.get(to)
    why = unreadable(source, producer, steps)
    if why:
        raise UsageError(why)
    all_steps, steps = steps, applicable(steps, given, source, producer)
    if source == to and not any(s.source == s.target == source for s in steps):
        raise UsageError(f"nothing to convert: FROM and TO are both '{source}'")
    direct = [s for s in steps if s.source == source and s.target == to]
    if direct:
        return [direct[0]]
    chains = reachable(source, steps)
    choosing = {k.replace("-", "_"): v for k, v in (given or {}).items()
                if any(s.chosen_by(k.replace("-", "_")) for s in all_steps)}
    if to not in chains and choosing and explain:
        name, value = next(iter(choosing.items()))
        others = choosing_values(name, source, to, all_steps, producer)
        raise UsageError(f"no route from {source} to {to} with --{name} {value}"
                         + (f"; --{name} here: {', '.join(others + ['auto'] if len(others) > 1 else others)}"
                            if others else ""))
    if to not in chains:
        targets = sorted(chains)
        where = ", ".join(targets) if targets else "nothing (no route starts there yet)"
        whose = f" for a file written by {producer.describe()}" if producer else ""
        raise UsageError(f"no route from {source} to {to}{whose}; from {source} this tool reaches: {where}")
    return chains[to]


def stacks_of(chain):
    seen = []
    for step in chain:
        if step.stack not in seen:
            seen.append(step.stack)
    return seen


def all_pairs(steps=routes.STEPS):
    steps = applicable(steps)
    pairs = []
    sources = []
    for s in steps:
        if s.source not in sources and not formats.get(s.source).internal:
            sources.append(s.source)
    for src in sources:
        for step in steps:
            if step.source == step.target == src:
                pairs.append((src, src, [step]))
        for target, chain in reachable(src, steps).items():
            pairs.append((src, target, chain))
    return pairs


def describe_routes(steps=routes.STEPS):
    lines = []
    for src, dst, chain in all_pairs(steps):
        if formats.get(dst).internal:
            continue
        lines.append(f"{src} -> {dst}  [{', '.join(stacks_of(chain))}]  via {' > '.join(s.name for s in chain)}")
        for alt in alternatives(chain, steps):
            lines.append(f"{src} -> {dst}  [{', '.join(stacks_of(alt[1]))}]  with --{alt[0]}")
        for label, producer in producer_variants(src, steps):
            try:
                alt = plan(src, dst, steps, producer=producer)
            except UsageError:
                continue
            if alt != chain:
                lines.append(f"{src} -> {dst}  [{', '.join(stacks_of(alt))}]  for {label} files")
    return lines


def producer_variants(source, steps=routes.STEPS):
    """[(label, Producer)]: one file version per range a stack reading `source` declares (stack.json "reads")."""
    from orchestrator import images
    from orchestrator.producers import Producer, parse_range

    stacks = images.discover_stacks()
    found = []
    for name in sorted({s.stack for s in steps if s.source == source}):
        for library, text in stacks[name].reads:
            high = parse_range(text)[1]
            found.append((f"{library} {text}", Producer(library, f"{high[0]}.{high[1]}.0")))
    return found


def alternatives(chain, steps=routes.STEPS):
    """Chains chosen by a non-default value of a step-choosing option: [("option value", chain)]."""
    found = []
    for step in steps:
        if step.when and step not in chain and any(v is not None for v in when_values(step)):
            name, value = step.when[0], next(v for v in when_values(step) if v is not None)
            try:
                alt = plan(chain[0].source, chain[-1].target, steps, {name: value})
            except UsageError:
                continue
            if alt != chain and step in alt:
                found.append((f"{name} {value}", alt))
    return found


def describe_plan(chain, values=None, producer=None, preludes=()):
    from orchestrator import images, options, verify

    lines = [f"{chain[0].source} -> {chain[-1].target}: {len(chain)} step(s)"]
    for prelude in preludes:
        steps = ", ".join(f"{s.name} in stack {s.stack}" for s in prelude.chain)
        lines.append(f"  --{prelude.option}: written by {prelude.producer.describe()}, which the step taking it "
                     f"cannot read: first {steps}")
    if producer is not None:
        first = images.get_stack(chain[0].stack)
        why = dict(first.reads).get(producer.library)
        lines.append(f"  input: written by {producer.describe()}; read by stack {first.name}"
                     + (f" ({producer.library} {why})" if why else ""))
        if not first.reads_file(producer):
            lines.append(f"    newer than {first.name} reads: {chain[0].reads_newer}")
    for i, step in enumerate(chain, 1):
        script = " ".join((f"images/{step.stack}/steps/{step.script}",) + step.args)
        lines.append(f"  {i}. {step.name}: {step.source} -> {step.target} in stack {step.stack} ({script})")
    check = verify.check_for(chain, values, producer)
    if check:
        lines.append(f"  verify: {check.reference_format} in {check.reference.stack} vs {chain[-1].target} in "
                     f"{check.result.stack}, compared in {check.compare_stack}")
    else:
        lines.append("  verify: not available for this pair")
    needed = [name for name, _ in options.required(chain)]
    if needed:
        lines.append("  required: " + " ".join(f"--{o}" for o in needed))
    lines.append("  options: " + " ".join(f"--{o}" for o in options.accepted(chain)))
    return "\n".join(lines)
