"""The bad-input corpus (tests/robustness/corpus.py): ssd."""

import casecheck

test_bad_input = casecheck.tests_of("ssd")
