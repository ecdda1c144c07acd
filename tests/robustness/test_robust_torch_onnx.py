"""The bad-input corpus (tests/robustness/corpus.py): pytorch onnx."""

import casecheck

test_bad_input = casecheck.tests_of("pytorch", "onnx")
