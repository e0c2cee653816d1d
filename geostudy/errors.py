"""The one exception the study raises for bad input."""


class StudyError(ValueError):
    """Input the study cannot run on: a missing or malformed corpus, a prompt that is empty or
    longer than the model's context, an unknown site or estimator, an output folder that cannot
    be written, a model or tokenizer that cannot be loaded. Raised before any work is done; the
    message says what is wrong and how to fix it."""


class SiteError(StudyError):
    """A site the model does not have, or that is not a token cloud (the command line adds where
    to see the model's sites)."""
