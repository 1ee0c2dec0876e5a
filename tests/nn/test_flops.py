"""The FLOPs accounting against the values printed in the paper's tables."""
import pytest

from skiprnn.nn.flops import RESNET50_FLOPS, VGG16_FLOPS, inference_flops


def three_sig(x):
    return float(f"{x:.2e}")


@pytest.mark.parametrize(
    "mode, input_size, hidden, layers, updates, feature, printed",
    [
        # Table 1, adding task (T = 50): full-update and Skip rows
        ("lstm", 2, 110, 1, 50, 0, 2.46e6),
        ("gru", 2, 110, 1, 50, 0, 1.85e6),
        ("skip_lstm", 2, 110, 1, 0.539 * 50, 0, 1.33e6),
        ("skip_lstm", 2, 110, 1, 0.811 * 50, 0, 2.00e6),
        ("skip_gru", 2, 110, 1, 0.507 * 50, 0, 9.40e5),
        # Table 2, sequential MNIST (T = 784)
        ("lstm", 1, 110, 1, 784, 0, 3.83e7),
        ("gru", 1, 110, 1, 784, 0, 2.87e7),
        ("skip_lstm", 1, 110, 1, 379.38, 0, 1.86e7),
        ("skip_gru", 1, 110, 1, 392.62, 0, 1.44e7),
        # Table 3, Charades: 2 x 256 units on 4096-d fc7 features, VGG-16 per frame
        ("lstm", 4096, 256, 2, 172.9, VGG16_FLOPS, 2.65e12),
        ("gru", 4096, 256, 2, 172.9, VGG16_FLOPS, 2.65e12),
        ("skip_lstm", 4096, 256, 2, 41.9, VGG16_FLOPS, 6.41e11),
        ("skip_gru", 4096, 256, 2, 100.8, VGG16_FLOPS, 1.54e12),
        # Table 6, UCF-101: 2 x 512 units on 2048-d ResNet-50 features, 250 frames
        ("lstm", 2048, 512, 2, 250, RESNET50_FLOPS, 9.52e11),
        ("gru", 2048, 512, 2, 250, RESNET50_FLOPS, 9.51e11),
        ("skip_lstm", 2048, 512, 2, 7.6, RESNET50_FLOPS, 2.89e10),
    ],
)
def test_matches_paper_tables(mode, input_size, hidden, layers, updates, feature, printed):
    got = inference_flops(mode, input_size, hidden, updates, num_layers=layers, feature_flops=feature)
    assert three_sig(got) == printed


def test_counts_by_hand():
    # one LSTM layer: (2 + 110) inputs x 4 gates x 110 units; the Skip gate adds 110 per update
    assert inference_flops("lstm", 2, 110, 1) == 112 * 440
    assert inference_flops("skip_lstm", 2, 110, 1) == 112 * 440 + 110
    with pytest.raises(ValueError, match="lstm, gru, skip_lstm, skip_gru"):
        inference_flops("rnn", 2, 110, 1)
