"""The CTR recipe's config sections: the shared CTR tower as its model; no method settings."""

from distrec.config.schema import CtrModelConfig as ModelConfig  # noqa: F401
from distrec.config.schema import NoMethodConfig as MethodConfig  # noqa: F401
