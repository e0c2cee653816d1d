"""Exceptions raised by gpt2np. All derive from ValueError or OSError so callers may catch broadly."""


class ConfigError(ValueError):
    """A config.json that is malformed or disagrees with the weights."""


class WeightsError(ValueError):
    """A weights file that is missing a tensor, has a wrong shape, or is not a safetensors file."""


class ModelNotFoundError(OSError):
    """The model could not be found locally and could not be downloaded."""


class InputError(ValueError):
    """Token ids, an attention mask or a hook's result the model cannot run on."""


class UnknownNameError(KeyError):
    """A tensor name (or pattern) that the model does not have."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])
