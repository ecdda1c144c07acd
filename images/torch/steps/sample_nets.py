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


KINDS = {"cnn": SmallCNN, "resnet": SmallResNet, "dense": DenseBlockNet, "inception": InceptionNet,
         "fire": FireNet, "shuffle": ShuffleNet}

