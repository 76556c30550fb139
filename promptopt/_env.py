"""Process environment promptopt needs before LiteLLM or datasets are imported.

LiteLLM otherwise fetches its price table from the internet at import, and `datasets` waits on
the HuggingFace hub; both are unreachable on offline machines and pointless for local files.
Users who want hub datasets can set HF_DATASETS_OFFLINE=0 themselves.
"""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DSP_CACHEBOOL", "false")
os.environ.setdefault("LITELLM_LOG", "ERROR")
