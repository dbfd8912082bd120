"""Tests of deconv_core: numpy oracle, framework goldens, properties and error messages."""
