import torch

from fewshot.evaluation.evaluator import embed_dataset
from fewshot.methods.protonet import PrototypicalNetworks
from fewshot.nets import build_encoder
from fewshot.nets.inference import fold_batch_norm
from synthetic import make_dataset


def trained_statistics_encoder():
    torch.manual_seed(0)
    encoder = build_encoder("conv4", 1, 28)
    encoder.train()
    with torch.no_grad():
        for _ in range(3):  # move the running statistics away from their initial 0 / 1
            encoder(torch.rand(16, 1, 28, 28) * 3 + 1)
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 2.0)
                module.bias.uniform_(-1.0, 1.0)
    return encoder.eval()


def test_folded_encoder_gives_the_same_embeddings_and_leaves_the_original_alone():
    encoder = trained_statistics_encoder()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    folded = fold_batch_norm(encoder)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules()) == 4
    images = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(folded(images), encoder(images), atol=1e-4, rtol=1e-4)
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())


def test_embed_dataset_uses_the_folded_copy_and_keeps_the_method_trainable():
    method = PrototypicalNetworks(trained_statistics_encoder()).eval()
    dataset = make_dataset(n_classes=3, per_class=4)
    embeddings = embed_dataset(method, dataset, torch.device("cpu"), query=True)
    with torch.no_grad():
        expected = method.encoder(dataset.images_at(torch.arange(len(dataset))))
    assert torch.allclose(embeddings, expected, atol=1e-4, rtol=1e-4)
    loss = method.encoder(torch.rand(2, 1, 28, 28)).sum()
    loss.backward()  # the method's own weights are untouched by inference mode
    assert all(p.grad is not None for p in method.parameters())
