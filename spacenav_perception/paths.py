"""Where the package's shipped files live: the ament share directory on a ROS install,
the source checkout otherwise (editable install)."""
from pathlib import Path

PACKAGE = 'spacenav_perception'
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def share_dir() -> Path:
    """The directory holding config/, launch/ and models/."""
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory(PACKAGE))
        if (share / 'config').is_dir():
            return share
    except Exception:  # not installed through colcon / ament index: use the checkout
        pass
    return SOURCE_ROOT


def config_path(name: str) -> Path:
    return share_dir() / 'config' / name


def packaged_model_path(name: str, suffix: str = '.ts') -> Path:
    """Path of a model shipped in models/, e.g. packaged_model_path('centroid')."""
    return share_dir() / 'models' / f'{name}{suffix}'
