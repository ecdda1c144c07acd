"""Small CNN architectures for samples and tests (random weights). make_torch.py copies this file next to the
saved models as net.py, so a state_dict sample comes with its code: --model_code net.py:<Class>."""

import torch
from torch import nn
from torch.nn import functional as F


class SmallCNN(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return F.softmax(self.fc(x), dim=1)


class Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.a = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(channels)
        self.b = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(channels)

    def forward(self, x):
        y = F.relu(self.bn_a(self.a(x)))
        return F.relu(x + self.bn_b(self.b(y)))


class SmallResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(Residual(16), Residual(16))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class DenseBlockNet(nn.Module):
    """DenseNet-style: every layer sees the concatenation of all earlier feature maps."""

    def __init__(self, growth=6, layers=3, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(8 + i * growth), nn.ReLU(), nn.Conv2d(8 + i * growth, growth, 3, padding=1))
            for i in range(layers))
        self.transition = nn.Conv2d(8 + layers * growth, 12, 1)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x):
        features = [self.stem(x)]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        x = F.avg_pool2d(self.transition(torch.cat(features, 1)), 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InceptionNet(nn.Module):
    """Inception-style block: parallel 1x1, 3x3, 5x5 and pooled branches concatenated on channels."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.b1 = nn.Conv2d(12, 4, 1)
        self.b3 = nn.Sequential(nn.Conv2d(12, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.b5 = nn.Sequential(nn.Conv2d(12, 2, 1), nn.ReLU(), nn.Conv2d(2, 4, 5, padding=2))
        self.bp = nn.Conv2d(12, 4, 1)
        self.fc = nn.Linear(18, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        pooled = self.bp(F.max_pool2d(x, 3, stride=1, padding=1))
        x = torch.cat([self.b1(x), self.b3(x), self.b5(x), pooled], dim=1)
        return F.log_softmax(self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1)), dim=1)


class Fire(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1 = nn.Conv2d(squeeze, expand, 1)
        self.e3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x):
        s = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.e1(s)), F.relu(self.e3(s))], 1)


class FireNet(nn.Module):
    """SqueezeNet-style fire modules, ending in a per-pixel softmax over the channel axis."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.fire1 = Fire(16, 4, 8)
        self.fire2 = Fire(16, 4, 8)
        self.head = nn.Conv2d(16, num_classes, 1)

    def forward(self, x):
        x = self.fire2(self.fire1(F.relu(self.stem(x))))
        return F.softmax(self.head(x), dim=1)


class ShuffleNet(nn.Module):
    """ShuffleNet-style channel shuffle: reshape to groups, transpose, flatten back."""

    def __init__(self, groups=2, num_classes=10):
        super().__init__()
        self.groups = groups
        self.stem = nn.Conv2d(3, 12, 3, padding=1)
        self.gconv = nn.Conv2d(12, 12, 1, groups=groups)
        self.dw = nn.Conv2d(12, 12, 3, padding=1, groups=12)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.gconv(x)
        n, c, h, w = x.shape
        x = x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)
        x = F.relu(self.dw(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SaturatedCNN(SmallCNN):
    """SmallCNN with logits in the hundreds: its softmax is one-hot on any input (verification must look at the
    logits to see anything)."""

    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        with torch.no_grad():
            self.fc.weight.mul_(3e4)


class ConvReLU(nn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding)

    def forward(self, x):
        return F.relu(self.conv(x))


class InceptionV1Block(nn.Module):
    """GoogLeNet's inception module: 1x1, 1x1->3x3, 1x1->5x5 and 3x3 max-pool (ceil mode)->1x1 branches."""

    def __init__(self, cin, c1, c3r, c3, c5r, c5, pool):
        super().__init__()
        self.b1 = ConvReLU(cin, c1, 1)
        self.b3 = nn.Sequential(ConvReLU(cin, c3r, 1), ConvReLU(c3r, c3, 3, padding=1))
        self.b5 = nn.Sequential(ConvReLU(cin, c5r, 1), ConvReLU(c5r, c5, 5, padding=2))
        self.bp = ConvReLU(cin, pool, 1)
        self.out_channels = c1 + c3 + c5 + pool

    def forward(self, x):
        pooled = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(pooled)], 1)


class InceptionV1(nn.Module):
    """An Inception-v1 (GoogLeNet) stem and three inception modules at a quarter of the width: 7x7/2 conv,
    3x3/2 max-pools in ceil mode, local response normalization (size 5), four-branch concats, global average
    pooling and a softmax over the classes."""

    def __init__(self, num_classes=1000, width=0.25):
        super().__init__()
        c = lambda n: max(4, int(n * width))  # noqa: E731
        self.conv1 = ConvReLU(3, c(64), 7, stride=2, padding=3)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.conv2 = ConvReLU(c(64), c(64), 1)
        self.conv3 = ConvReLU(c(64), c(192), 3, padding=1)
        self.i3a = InceptionV1Block(c(192), c(64), c(96), c(128), c(16), c(32), c(32))
        self.i3b = InceptionV1Block(self.i3a.out_channels, c(128), c(128), c(192), c(32), c(96), c(64))
        self.i4a = InceptionV1Block(self.i3b.out_channels, c(192), c(96), c(208), c(16), c(48), c(64))
        self.fc = nn.Linear(self.i4a.out_channels, num_classes)
        # He-initialized, with a stem strong enough that the LRNs matter (as they do on pixel-scale inputs)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    m.bias.uniform_(-0.1, 0.1)
            self.conv1.conv.weight.mul_(10.0)
            self.fc.weight.mul_(40.0)  # and logits large enough that the softmax saturates on most inputs

    def forward(self, x):
        x = self.lrn(F.max_pool2d(self.conv1(x), 3, stride=2, ceil_mode=True))
        x = F.max_pool2d(self.lrn(self.conv3(self.conv2(x))), 3, stride=2, ceil_mode=True)
        x = F.max_pool2d(self.i3b(self.i3a(x)), 3, stride=2, ceil_mode=True)
        x = torch.flatten(F.adaptive_avg_pool2d(self.i4a(x), 1), 1)
        return F.softmax(self.fc(x), dim=1)


class GeluNet(nn.Module):
    """A conv stem and a transformer-style MLP block with exact (erf) GELU: ONNX writers below opset 20 (torch,
    tf2onnx, Paddle2ONNX) spell it with Erf, which has no TFLite builtin."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x):
        x = torch.flatten(F.adaptive_avg_pool2d(F.gelu(self.stem(x)), 1), 1)
        return self.fc2(F.gelu(self.fc1(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: a 1x1 expansion, a 3x3 depthwise convolution and a linear 1x1 projection, with a skip
    connection when the shape allows one."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.skip else self.body(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 at width 1.0 on 224x224 inputs with 1000 classes (3.5 M parameters): the bench's
    production-sized model."""

    # (expansion, channels, repeats, first stride) of the paper's table 2
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes=1000):
        super().__init__()
        layers, cin = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()], 32
        for expand, cout, repeats, stride in self.SETTINGS:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.classifier(x)


KINDS = {"cnn": SmallCNN, "saturated": SaturatedCNN, "resnet": SmallResNet, "dense": DenseBlockNet,
         "inception": InceptionNet, "inception-v1": InceptionV1, "fire": FireNet, "shuffle": ShuffleNet,
         "gelu": GeluNet, "mobilenetv2": MobileNetV2}
# kinds whose input or class count differ from the small samples' 1x3x32x32 and 10 classes
INPUT_SHAPES = {"inception-v1": (1, 3, 112, 112), "mobilenetv2": (1, 3, 224, 224)}
CLASSES = {"inception-v1": 1000, "mobilenetv2": 1000}
# deep kinds whose batch-norm statistics are taken from random images (else their outputs barely vary)
DATA_INIT = ("mobilenetv2",)

