import pytest
import torch
from torch import nn

from ldm_pyro.encoders import (
    Encoder,
    MLPEncoder,
    ProjectorHead,
    SmallCNN,
    build_encoder,
)


def test_mlp_flattens_and_matches_hand_computation():
    mlp = MLPEncoder(12, 3, hidden=(5,))
    x = torch.randn(4, 3, 2, 2)
    first, second = mlp.net[0], mlp.net[2]
    # Reference: the two-layer perceptron written out.
    flat = x.reshape(4, 12)
    expected = torch.relu(flat @ first.weight.T + first.bias) @ second.weight.T
    expected = expected + second.bias
    torch.testing.assert_close(mlp(x), expected)


def test_mlp_final_activation():
    mlp = MLPEncoder(4, 6, hidden=(), final_activation=True)
    assert (mlp(torch.randn(50, 4)) >= 0).all()
    assert isinstance(mlp.net[-1], nn.ReLU)


def test_mlp_rejects_wrong_width():
    mlp = MLPEncoder(64, 8)
    with pytest.raises(
        ValueError, match=r"64 features per sample, got shape \(2, 63\)"
    ):
        mlp(torch.randn(2, 63))


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 28, 28), (1, 5, 7)])
def test_cnn_output_shape(shape):
    cnn = SmallCNN(shape[0], 16)
    out = cnn(torch.randn(4, *shape))
    assert out.shape == (4, 16)


def test_cnn_downsamples_digits_to_4x4():
    cnn = SmallCNN(1, 16, channels=(32, 64))
    convolutions = cnn.net[:4]
    assert convolutions(torch.randn(2, 1, 8, 8)).shape == (2, 64, 4, 4)


def test_cnn_rejects_wrong_channels():
    cnn = SmallCNN(1, 8)
    with pytest.raises(ValueError, match="1 channels.*in_channels=3"):
        cnn(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="4 dimensions"):
        cnn(torch.randn(2, 64))


def test_projector_batch_norm_layers():
    plain = ProjectorHead(8, 4, hidden=(16, 16))
    normed = ProjectorHead(8, 4, hidden=(16, 16), batch_norm=True)
    linear = ProjectorHead(8, 4, hidden=())
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    assert sum(isinstance(m, nn.BatchNorm1d) for m in normed.modules()) == 2
    assert len(linear.net) == 1
    assert normed(torch.randn(10, 8)).shape == (10, 4)


def test_projector_rejects_wrong_width():
    head = ProjectorHead(8, 4)
    with pytest.raises(ValueError, match="last dimension 8"):
        head(torch.randn(3, 7))


def test_encoder_features_and_latents():
    backbone = MLPEncoder(6, 10, hidden=(), final_activation=True)
    head = ProjectorHead(10, 3, hidden=())
    encoder = Encoder(backbone, head)
    x = torch.randn(5, 6)
    torch.testing.assert_close(encoder.features(x), backbone(x))
    torch.testing.assert_close(encoder(x), head(backbone(x)))


def test_encoder_normalize_to_unit_sphere():
    encoder = Encoder(MLPEncoder(6, 4), normalize=True)
    z = encoder(torch.randn(20, 6))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(20))


def test_encoder_normalize_rejects_one_dimension():
    encoder = Encoder(MLPEncoder(6, 1), normalize=True)
    with pytest.raises(ValueError, match="D >= 2"):
        encoder(torch.randn(3, 6))


def test_build_mlp_without_projector():
    encoder = build_encoder("mlp", [1, 8, 8], 16, hidden=[32])
    x = torch.randn(4, 1, 8, 8)
    assert encoder.projector is None
    assert encoder(x).shape == (4, 16)
    torch.testing.assert_close(encoder.features(x), encoder(x))


def test_build_cnn_with_projector():
    encoder = build_encoder(
        "cnn",
        [1, 8, 8],
        8,
        hidden=[4, 8],
        projector=[16],
        feature_dim=12,
        batch_norm=True,
        normalize=True,
    )
    x = torch.randn(6, 1, 8, 8)
    features = encoder.features(x)
    assert features.shape == (6, 12)
    assert (features >= 0).all()
    torch.testing.assert_close(encoder(x).norm(dim=-1), torch.ones(6))
    assert encoder.backbone.channels == (4, 8)


def test_build_encoder_gradients_flow():
    encoder = build_encoder("mlp", (64,), 4, projector=[])
    encoder(torch.randn(8, 64)).square().sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())


def test_build_encoder_rejects_unknown_kind():
    with pytest.raises(ValueError, match=r"kind must be one of \('mlp', 'cnn'\)"):
        build_encoder("resnet", (1, 8, 8), 8)


def test_build_encoder_rejects_bad_settings():
    with pytest.raises(ValueError, match=r"input_shape \(C, H, W\)"):
        build_encoder("cnn", (64,), 8)
    with pytest.raises(ValueError, match="latent_dim >= 2"):
        build_encoder("mlp", (64,), 1, normalize=True)
    with pytest.raises(TypeError, match="hidden must be a list"):
        build_encoder("mlp", (64,), 8, hidden=256)
    with pytest.raises(ValueError, match=r"hidden\[1\] must be a positive integer"):
        build_encoder("mlp", (64,), 8, hidden=[256, 0])
    with pytest.raises(TypeError, match="latent_dim must be a positive integer"):
        build_encoder("mlp", (64,), 8.0)
