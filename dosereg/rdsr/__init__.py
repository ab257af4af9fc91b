"""Pure (Django-free) radiation dose extraction from DICOM objects.

Public API::

    from dosereg.rdsr import extract_file, extract_bytes, ExtractionError, inspect_dict
"""
from .extract import ExtractionError, NotADoseObject, extract_bytes, extract_file
from .inspect import inspect_dict

__all__ = ["ExtractionError", "NotADoseObject", "extract_bytes", "extract_file", "inspect_dict"]
