# -*- coding: utf-8 -*-
"""Render Graphviz DOT files to SVG (this stack has Graphviz, for TOCO's GRAPHVIZ_DOT pictures): every *.dot of
--input becomes the same name .svg in --out. Python 2.7 and 3.

    render_graph.py --input DIR --out DIR
"""
from __future__ import print_function

import argparse
import os
import subprocess

from step_sdk import fail, step_done


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    made = []
    for name in sorted(os.listdir(args.input)):
        if not name.endswith(".dot"):
            continue
        target = name[:-4] + ".svg"
        proc = subprocess.Popen(["dot", "-Tsvg", os.path.join(args.input, name), "-o", os.path.join(args.out, target)],
                                stderr=subprocess.PIPE)
        _, err = proc.communicate()
        if proc.returncode != 0:
            fail("dot could not render %s: %s" % (name, err.decode("utf-8", "replace").strip()[-300:]))
        made.append(target)
    step_done(args.out, made)


if __name__ == "__main__":
    main()
