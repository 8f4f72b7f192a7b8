"""The thesis 6-conv centroid regressor (appendix 8.1.4), layer for layer.

Input (N, 1, 128, 128) mono in [0, 1]; output (N, 2) centroid in model-input pixels
(manifest output convention ``xy_input_px``).  Spatial sizes for a 128 input:
128 -conv9-> 120 -pool-> 60 -conv7 p1-> 56 -pool-> 28 -conv5-> 24 -pool-> 12 -conv5-> 8
-pool-> 4 -conv2 p1-> 5 -conv2-> 4 -pool-> 2 -> global average -> dropout2d -> linear.
Note the appendix pools after conv1..conv4 and after conv6 (none after conv5).
"""
import torch
import torch.nn.functional as F
from torch import nn

INPUT_SIZE = 128
DROPOUT = 0.175


class ThesisCNN(nn.Module):
    output_convention = 'xy_input_px'

    def __init__(self, dropout: float = DROPOUT):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=9)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=7, padding=1)
        self.conv3 = nn.Conv2d(64, 128, kernel_size=5)
        self.conv4 = nn.Conv2d(128, 256, kernel_size=5)
        self.conv5 = nn.Conv2d(256, 512, kernel_size=2, padding=1)
        self.conv6 = nn.Conv2d(512, 1024, kernel_size=2)
        self.pool = nn.MaxPool2d(2, 2)
        # Dropout2d on a (N, 1024) tensor: kept as in the thesis (it acts on the flattened
        # features); we give it an explicit (N, C, 1, 1) view so the behaviour is well defined.
        self.dropout = nn.Dropout2d(p=dropout)
        self.fc1 = nn.Linear(1024, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.pool(F.relu(self.conv3(x)))
        x = self.pool(F.relu(self.conv4(x)))
        x = F.relu(self.conv5(x))
        x = self.pool(F.relu(self.conv6(x)))
        x = F.adaptive_avg_pool2d(x, 1)          # (N, 1024, 1, 1)
        x = self.dropout(x).flatten(1)
        return self.fc1(x)
