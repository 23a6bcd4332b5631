"""What the tritonclient scripts share: a check that prints what it checked or stops the script,
a check that a call is refused with the server's reason, and softmax."""

import numpy as np
from tritonclient.utils import InferenceServerException


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def refused(call, reason, what):
    try:
        call()
    except InferenceServerException as error:
        check(reason in str(error), f"{what} is refused with the server's reason ({error})")
        return
    raise SystemExit(f"FAILED: {what} was answered")


def softmax(logits):
    e = np.exp(logits - logits.max())
    return e / e.sum()
