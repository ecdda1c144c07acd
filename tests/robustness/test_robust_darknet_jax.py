"""The bad-input corpus (tests/robustness/corpus.py): darknet jax."""

import casecheck

test_bad_input = casecheck.tests_of("darknet", "jax")
