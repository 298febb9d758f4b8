# How `sam build` builds each artifact that has dependencies (template.yaml: `BuildMethod: makefile`; the
# artifact's own Makefile includes this file and names its target). SAM copies the artifact's folder to a
# scratch directory, runs `make build-<LogicalId>` there with ARTIFACTS_DIR set, and takes ARTIFACTS_DIR.
#
# The folder's lock (requirements.txt, written by `make lock`: every package at one exact version, with the
# SHA-256 of each of its files) is installed for Lambda's platform (CPython 3.13, arm64, Amazon Linux 2023's
# glibc 2.34), wheels only, and pip refuses any file whose hash the lock does not list and any dependency
# the lock does not pin. Nothing is resolved here: two builds of one commit install the same files.
# Needs python3.13 on PATH (`make build` puts it there: buildtools/find-python.sh); the pip is the locked one
# (buildtools/pip.txt) that `make build` installs into LAMBDA_PIP, else python3.13's own.
# pip takes each platform tag as given (a PEP 600 `manylinux_2_34` does not imply the older glibc tags), so
# every tag a glibc 2.34 system runs is listed, as SAM's own pip builder does.
LAMBDA_PLATFORMS = manylinux2014_aarch64 $(foreach minor,17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34,\
	manylinux_2_$(minor)_aarch64)
LAMBDA_PIP_INSTALL = $(if $(LAMBDA_PIP),PYTHONPATH="$(LAMBDA_PIP)" )python3.13 -m pip install --quiet --disable-pip-version-check --no-compile \
	--require-hashes --only-binary=:all: --implementation cp --python-version 3.13 --abi cp313 \
	$(foreach platform,$(LAMBDA_PLATFORMS),--platform $(platform)) -r requirements.txt --target
# The code beside the packages: everything in the folder but the build's own files.
LAMBDA_COPY_CODE = find . -mindepth 1 -maxdepth 1 ! -name Makefile ! -name 'requirements.*' \
	-exec cp -R {}

# A function's packages and code land at the root of its artifact (/var/task); a layer's under python/
# (/opt/python).
lambda-function = $(LAMBDA_PIP_INSTALL) "$(ARTIFACTS_DIR)" && $(LAMBDA_COPY_CODE) "$(ARTIFACTS_DIR)" \;
lambda-layer = mkdir -p "$(ARTIFACTS_DIR)/python" && $(LAMBDA_PIP_INSTALL) "$(ARTIFACTS_DIR)/python" \
	&& $(LAMBDA_COPY_CODE) "$(ARTIFACTS_DIR)/python" \;
