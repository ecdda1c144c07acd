"""The bad-input corpus (tests/robustness/corpus.py): OUTPUT_DIR."""

import casecheck

test_bad_input = casecheck.tests_of("OUTPUT_DIR")
