"""The bad-input corpus (tests/robustness/corpus.py): keras_saved_model tf_saved_model tf_hub tf_frozen_model keras."""

import casecheck

test_bad_input = casecheck.tests_of("keras_saved_model", "tf_saved_model", "tf_hub", "tf_frozen_model", "keras")
