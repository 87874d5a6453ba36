"""The harmony special tokens: the vocabulary of the chat format.

Every Mind 4 encoding carries these tokens so that a conversation renders the
same way whatever the model (see :mod:`mind4_tokenizer.harmony`). In
``o200k_harmony`` (gpt-oss) they sit at fixed ids (REFERENCE.md); in Mind 4's
own encodings they follow the mergeable ranks, in the order below.
"""

from __future__ import annotations

STARTOFTEXT = "<|startoftext|>"
ENDOFTEXT = "<|endoftext|>"
RETURN = "<|return|>"
CONSTRAIN = "<|constrain|>"
CHANNEL = "<|channel|>"
START = "<|start|>"
END = "<|end|>"
MESSAGE = "<|message|>"
CALL = "<|call|>"

#: The named harmony tokens, in the order of their ids in o200k_harmony.
HARMONY_SPECIALS: tuple[str, ...] = (
    STARTOFTEXT,
    ENDOFTEXT,
    RETURN,
    CONSTRAIN,
    CHANNEL,
    START,
    END,
    MESSAGE,
    CALL,
)

#: o200k_harmony: the named tokens at their real ids (REFERENCE.md).
O200K_HARMONY_IDS: dict[str, int] = {
    STARTOFTEXT: 199998,
    ENDOFTEXT: 199999,
    RETURN: 200002,
    CONSTRAIN: 200003,
    CHANNEL: 200005,
    START: 200006,
    END: 200007,
    MESSAGE: 200008,
    CALL: 200012,
}
O200K_BASE_N_RANKS = 199998  # mergeable ranks 0 .. 199997
O200K_HARMONY_N_VOCAB = 201088  # ranks + named specials + reserved ids up to 201087


def o200k_harmony_special_tokens() -> dict[str, int]:
    """All 1090 special tokens of o200k_harmony: the named ones plus
    ``<|reserved_N|>`` for every other id from 199998 to 201087."""
    specials = dict(O200K_HARMONY_IDS)
    taken = set(specials.values())
    for i in range(O200K_BASE_N_RANKS, O200K_HARMONY_N_VOCAB):
        if i not in taken:
            specials[f"<|reserved_{i}|>"] = i
    return specials


def appended_special_tokens(n_ranks: int) -> dict[str, int]:
    """Specials of a Mind 4 encoding: the harmony tokens right after ``n_ranks``."""
    return {text: n_ranks + i for i, text in enumerate(HARMONY_SPECIALS)}
