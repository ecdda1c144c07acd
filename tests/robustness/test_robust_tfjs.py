"""The bad-input corpus (tests/robustness/corpus.py): tfjs_layers_model tfjs_graph_model."""

import casecheck

test_bad_input = casecheck.tests_of("tfjs_layers_model", "tfjs_graph_model")
