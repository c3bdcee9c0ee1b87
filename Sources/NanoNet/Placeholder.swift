import NanoTensor
