"""BERT ('bert'): the tests every architecture gets (tester.py) on its fixtures."""

from tester import model_tests

globals().update(model_tests("bert"))
