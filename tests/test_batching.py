import numpy as np
import pytest

from fastembed_rt.batching import plan_batches
from fastembed_rt.tokenization import pack


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_tokens,max_sequences", [(1, 1), (50, 3), (300, 1000), (10_000, 7)])
def test_batches_cover_every_index_once_within_limits(seed, max_tokens, max_sequences):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 200, size=int(rng.integers(0, 300)))
    batches = plan_batches(lengths, max_tokens, max_sequences)
    covered = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
    assert sorted(covered.tolist()) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= max_sequences
        assert lengths[batch].sum() <= max_tokens or len(batch) == 1  # an oversize sequence travels alone
    flat = lengths[covered]
    assert (np.diff(flat) <= 0).all()  # longest first


def test_invalid_limits():
    for tokens, sequences, message in ((0, 4, "batch_tokens must be a positive integer, got 0"),
                                       ("8", 4, "batch_tokens must be a positive integer, got '8'"),  # was "'<' not supported"
                                       (8, 2.5, "max_batch_sequences must be a positive integer, got 2.5")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            plan_batches([1], tokens, sequences)


def test_pack_layout():
    batch = pack([[5, 6, 7], [8], []], skip=2)
    assert batch.input_ids.tolist() == [5, 6, 7, 8]
    assert batch.cu_seqlens.tolist() == [0, 3, 4, 4] and str(batch.cu_seqlens.dtype) == "torch.int32"
    assert batch.max_seqlen == 3 and batch.skip.tolist() == [2, 2, 2]
    assert pack([]).cu_seqlens.tolist() == [0] and pack([]).max_seqlen == 0
