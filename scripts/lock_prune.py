"""Leave packages out of a pip-compile lock: those named in a stack's requirements.exclude, and every package that
only they pull in (by the lock's own "# via" annotations, to a fixed point). For dependencies a package declares
but a stack's steps never import (e.g. litert-torch's LLM tooling: transformers, kagglehub, sentencepiece), which
would only make the image bigger; the image installs the lock with --no-deps, so nothing else asks for them.

    python3 scripts/lock_prune.py requirements.lock requirements.exclude    (run by scripts/lock.sh)
"""

import re
import sys

PACKAGE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")
ROOT = "-r requirements.in"


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(text):
    """(header lines, [block]) where a block is {"name", "lines", "via"} or a free comment {"lines"}."""
    header, blocks = [], []
    for line in text.splitlines():
        m = PACKAGE.match(line)
        if m:
            blocks.append({"name": canonical(m.group(1)), "lines": [line], "via": []})
        elif not blocks:
            header.append(line)
        elif line.startswith(" ") and "name" in blocks[-1]:
            blocks[-1]["lines"].append(line)
            comment = line.strip()
            if comment.startswith("# via "):
                blocks[-1]["via"].append(comment[len("# via "):].strip())
            elif comment.startswith("#   "):
                blocks[-1]["via"].append(comment[len("#   "):].strip())
        else:
            blocks.append({"lines": [line]})
    return header, blocks


def removed(blocks, excluded):
    """The canonical names left out: the excluded ones and those every parent of which is left out."""
    gone = {canonical(n) for n in excluded}
    changed = True
    while changed:
        changed = False
        for b in blocks:
            if "name" not in b or b["name"] in gone or not b["via"]:
                continue
            parents = [v for v in b["via"] if v != ROOT]
            if len(parents) == len(b["via"]) and all(canonical(p) in gone for p in parents):
                gone.add(b["name"])
                changed = True
    return gone


def prune(text, excluded):
    """The lock without the removed packages (and without "via" lines naming them); (text, removed names)."""
    header, blocks = parse(text)
    names = {b["name"] for b in blocks if "name" in b}
    unknown = sorted(canonical(n) for n in excluded if canonical(n) not in names)
    if unknown:
        raise SystemExit(f"lock_prune: {', '.join(unknown)} not in the lock (stale requirements.exclude?)")
    roots = sorted(b["name"] for b in blocks if ROOT in b.get("via", ()))
    clash = sorted(set(roots) & {canonical(n) for n in excluded})
    if clash:
        raise SystemExit(f"lock_prune: {', '.join(clash)} both required (requirements.in) and excluded")
    gone = removed(blocks, excluded)
    out = list(header)
    out.append("# left out by requirements.exclude (scripts/lock_prune.py), with what only they pull in:")
    out.append("#    " + " ".join(sorted(gone)))
    out.append("#")
    for b in blocks:
        if b.get("name") in gone:
            continue
        lines = [line for line in b["lines"]
                 if not (line.strip().startswith("#   ") and canonical(line.strip()[4:].strip()) in gone)]
        out.extend(lines)
    return "\n".join(out) + "\n", sorted(gone)


def read_names(path):
    with open(path) as fh:
        return [line.split("#", 1)[0].strip() for line in fh if line.split("#", 1)[0].strip()]


def main(lock, exclude):
    with open(lock) as fh:
        text, gone = prune(fh.read(), read_names(exclude))
    with open(lock, "w") as fh:
        fh.write(text)
    print(f"lock: left out {len(gone)} packages: {' '.join(gone)}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
