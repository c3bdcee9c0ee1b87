import NanoTensor

/// Differentiable operations. Each computes its output with the fast kernels and, when an input
/// requires a gradient, records the step that turns the output gradient into input gradients.
extension Tape {
    /// 3×3 "same" convolution with bias. `weight` is (cout, cin, 3, 3), `bias` (1, 1, 1, cout).
    public func conv3x3(_ x: Variable, weight: Variable, bias: Variable) -> Variable {
        conv3x3([(x, .copy)], weight: weight, bias: bias)
    }

    /// 3×3 convolution of the channel concatenation of `parts`, each copied or 2× upsampled
    /// (nearest) on its way into the convolution's padded input: a U-Net decoder's
    /// upsample + concat + conv without materialising the upsampled map or the concatenation.
    public func conv3x3(_ parts: [(Variable, PaddedPlanes.Transform)], weight: Variable, bias: Variable) -> Variable {
        let (y, input) = convForward(parts, weight: weight, bias: bias)
        let needs = parts.contains { $0.0.requiresGrad } || weight.requiresGrad || bias.requiresGrad
        let out = Variable(y, requiresGrad: needs)
        if out.requiresGrad {
            record { [unowned self] in  // steps run only inside this tape's backward()
                guard let g = out.grad else { return }
                self.convBackward(parts, input: input, outputGradient: PaddedPlanes.from(g, pool: self.pool), weight: weight, bias: bias)
            }
        }
        return out
    }

    /// Convolution, then batch norm with batch statistics (training), then optionally ReLU and
    /// inverted dropout, as one op: the batch norm's backward writes the convolution's output
    /// gradient straight into the padded layout its backward kernels read, the pre-BN map is the
    /// only one kept, and the ReLU and dropout masks are recomputed rather than stored.
    ///
    /// With `paddedOutput` the result is written as the padded planes a following convolution
    /// reads (for outputs whose consumers are convolutions), so no copy lays it out again.
    public func convBatchNorm(_ parts: [(Variable, PaddedPlanes.Transform)], conv: Conv2D, _ bn: BatchNorm,
                              relu: Bool, dropout: DropoutMask? = nil, paddedOutput: Bool = false) -> Variable {
        let (z, input, statistics) = convForward(parts, weight: conv.weight, bias: conv.bias, statistics: true)
        let (mean, invStd, scale, shift) = trainingStatistics(z, bn, batchStatistics: statistics)
        let dropout = dropout.flatMap { $0.rate > 0 ? $0 : nil }
        let needs = parts.contains { $0.0.requiresGrad } || conv.weight.requiresGrad || conv.bias.requiresGrad
            || bn.gamma.requiresGrad || bn.beta.requiresGrad
        let out: Variable
        if paddedOutput {
            let y = PaddedPlanes(n: z.shape.n, channels: z.shape.c, height: z.shape.h, width: z.shape.w)
            BatchNormKernels.affine(z, scale: scale, shift: shift, relu: relu, dropout: dropout, into: y, pool: pool)
            out = Variable(padded: y, requiresGrad: needs)
        } else {
            let y = Tensor(z.shape, zeroed: false)
            BatchNormKernels.affine(z, scale: scale, shift: shift, relu: relu, dropout: dropout, into: y, pool: pool)
            out = Variable(y, requiresGrad: needs)
        }
        if out.requiresGrad {
            let normalisation = BatchNormKernels.Normalisation(mean: mean, invStd: invStd, gamma: bn.gamma.value.array,
                                                               scale: scale, shift: shift)
            record { [unowned self] in  // steps run only inside this tape's backward()
                guard let g = out.grad else { return }
                self.convBatchNormBackward(parts, input: input, conv: conv, bn, z: z, dy: g, normalisation, relu: relu,
                                           dropout: dropout)
            }
        }
        return out
    }

    /// The backward of conv → BN (→ ReLU → dropout) from the gradient of its output.
    private func convBatchNormBackward(_ parts: [(Variable, PaddedPlanes.Transform)], input: ConvInput, conv: Conv2D,
                                       _ bn: BatchNorm, z: Tensor, dy: Tensor, _ normalisation: BatchNormKernels.Normalisation,
                                       relu: Bool, dropout: DropoutMask?, sums: BatchNormKernels.GradientSums? = nil) {
        let dG = Tensor(bn.gamma.shape), dB = Tensor(bn.beta.shape)
        if let fused = fusedConvolutionBackward(parts, input: input, z: z, weight: conv.weight, bias: conv.bias) {
            BatchNormKernels.backward(x: z, dy: dy, normalisation, reluAfter: relu, dropout: dropout, sums: sums, dGamma: dG.data,
                                      dBeta: dB.data, throughConvolution: fused.kernel, pool: pool)
            fused.finish()
        } else {
            let dz = PaddedPlanes(n: z.shape.n, channels: z.shape.c, height: z.shape.h, width: z.shape.w)
            BatchNormKernels.backward(x: z, dy: dy, normalisation, reluAfter: relu, dropout: dropout, sums: sums, dGamma: dG.data,
                                      dBeta: dB.data, into: dz, pool: pool)
            convBackward(parts, input: input, outputGradient: dz, weight: conv.weight, bias: conv.bias)
        }
        if bn.gamma.requiresGrad { bn.gamma.accumulate(dG) }
        if bn.beta.requiresGrad { bn.beta.accumulate(dB) }
    }

    /// A convolution's backward to run fused with its batch norm's second pass
    /// (`BatchNormKernels.ConvolutionBackward`: its output gradient is never written out), for a
    /// convolution of one direct input or a decoder convolution of [skip, upsample2x(map)];
    /// `finish` hands the gradients the kernel holds to the variables afterwards. Nil for any
    /// other input.
    func fusedConvolutionBackward(_ parts: [(Variable, PaddedPlanes.Transform)], input: ConvInput, z: Tensor,
                                  weight: Variable, bias: Variable)
        -> (kernel: BatchNormKernels.ConvolutionBackward, finish: () -> Void)? {
        let decoder = parts.count == 2 && parts[0].1 == .copy && parts[1].1 == .upsample2x && input.low != nil
        guard decoder || (parts.count == 1 && parts[0].1 == .copy && input.low == nil) else { return nil }
        let v = parts[0].0
        let cout = weight.shape.n, cin = weight.shape.c, cs = v.shape.c, cu = cin - cs
        let inputGradient = v.requiresGrad ? (
            weights: Conv3x3.PackedWeights.transposedFlipped(oihw: weight.value.data, cout: cout, cin: cin, inputChannels: 0..<cs),
            into: Tensor(v.shape, zeroed: false)) : nil
        var upsampled: BatchNormKernels.ConvolutionBackward.Upsampled? = nil
        if decoder, let low = input.low {
            let map = parts[1].0
            let mapGradient = map.requiresGrad ? (
                weights: UpsampledConv3x3.DataWeights(oihw: weight.value.data, cout: cout, allInputs: cin, inputChannels: cs..<cin),
                into: Tensor(map.shape, zeroed: false)) : nil
            upsampled = .init(low: low, inputGradient: mapGradient, dW: Tensor(Shape(cout, cu, 3, 3)))
        }
        let kernel = BatchNormKernels.ConvolutionBackward(input: input.direct, inputGradient: inputGradient,
                                                          dW: Tensor(Shape(cout, cs, 3, 3)), dB: Tensor(bias.shape),
                                                          upsampled: upsampled)
        return (kernel, {
            if let dx = kernel.inputGradient?.into { v.accumulate(dx) }
            if let dL = kernel.upsampled?.inputGradient?.into { parts[1].0.accumulate(dL) }
            if weight.requiresGrad {
                if let dWu = kernel.upsampled?.dW {  // the skip part's weights, then the upsampled part's, per output channel
                    let dW = Tensor(weight.shape), dWs = kernel.dW
                    for o in 0..<cout {
                        (dW.data + o * cin * 9).update(from: dWs.data + o * cs * 9, count: cs * 9)
                        (dW.data + (o * cin + cs) * 9).update(from: dWu.data + o * cu * 9, count: cu * 9)
                    }
                    weight.accumulate(dW)
                } else {
                    weight.accumulate(kernel.dW)
                }
            }
            if bias.requiresGrad, let dB = kernel.dB { bias.accumulate(dB) }
        })
    }

    /// A U-Net's last block and its 1×1 head as one op: convolution, batch norm with batch
    /// statistics and ReLU, then the head, which forms its input from the pre-BN map as it reads
    /// it (`ChannelKernels.RectifiedAffine`), so the block's output is never stored; the head's
    /// backward forms it again. Returns the logits.
    ///
    /// Tried and not kept (AMD EPYC fam 26 mod 2, AVX-512, 2 threads): the head's backward
    /// folded into the batch norm's two passes, its input gradient formed row by row from the
    /// loss gradient where they read it (evaluated once per image and thread) and its weight
    /// gradient summed in the first pass, so the 84 MB map of a batch-20 step is neither written
    /// nor read back twice. Paired against this, 6 rounds: median step ratio 1.006; evaluated
    /// per channel and row instead, 1.033. What it saves in bytes it spends in forming them.
    public func convBatchNormHead(_ parts: [(Variable, PaddedPlanes.Transform)], conv: Conv2D, _ bn: BatchNorm,
                                  head: Conv2D) -> Variable {
        require(head.kernel == 1, "the head is a 1×1 convolution")
        let (z, input, statistics) = convForward(parts, weight: conv.weight, bias: conv.bias, statistics: true)
        let (mean, invStd, scale, shift) = trainingStatistics(z, bn, batchStatistics: statistics)
        let transform = ChannelKernels.RectifiedAffine(scale: scale, shift: shift)
        let logits = ChannelKernels.conv1x1(z, weights: head.weight.value.data, bias: head.bias.value.data,
                                            cout: head.weight.shape.n, inputTransform: transform, pool: pool)
        let needs = parts.contains { $0.0.requiresGrad } || conv.weight.requiresGrad || conv.bias.requiresGrad
            || bn.gamma.requiresGrad || bn.beta.requiresGrad || head.weight.requiresGrad || head.bias.requiresGrad
        let out = Variable(logits, requiresGrad: needs)
        if needs {
            let normalisation = BatchNormKernels.Normalisation(mean: mean, invStd: invStd, gamma: bn.gamma.value.array,
                                                               scale: scale, shift: shift)
            record { [unowned self] in  // steps run only inside this tape's backward()
                let dW = Tensor(head.weight.shape), dB = Tensor(head.bias.shape)
                // The gradient of the block's output (the head's input), with the first pass of
                // the block's batch-norm gradient gathered as it is formed.
                let (dy, sums): (Tensor, BatchNormKernels.GradientSums?)
                if let lg = out.lossGradientAlone {  // the logits' gradient is never laid out
                    (dy, sums) = ChannelKernels.conv1x1Backward(x: z, lossGradient: lg, weights: head.weight.value.data, dW: dW.data,
                                                                dB: dB.data, inputTransform: transform, gatheringSumsOf: normalisation,
                                                                pool: self.pool)
                } else {
                    guard let g = out.grad else { return }
                    (dy, sums) = ChannelKernels.conv1x1Backward(x: z, dy: g, weights: head.weight.value.data, dW: dW.data, dB: dB.data,
                                                                inputTransform: transform, gatheringSumsOf: normalisation,
                                                                pool: self.pool)
                }
                if head.weight.requiresGrad { head.weight.accumulate(dW) }
                if head.bias.requiresGrad { head.bias.accumulate(dB) }
                self.convBatchNormBackward(parts, input: input, conv: conv, bn, z: z, dy: dy, normalisation, relu: true,
                                           dropout: nil, sums: sums)
            }
        }
        return out
    }

    /// A U-Net encoder stage as one op: convolution, batch norm with batch statistics, and the
    /// stage's two outputs of the BN output y: `skip` = max(y, 0), the padded planes the decoder's
    /// convolution reads, and `pooled` = the 2×2 max pooling of y (not of its ReLU: pyNanoFind
    /// pools the pre-ReLU output), the padded planes of the next stage's input. y itself is never
    /// stored: the forward writes both outputs in one pass, and the backward forms y's gradient
    /// from both outputs' gradients (the ReLU's gate and the pooling's routing recomputed from the
    /// pre-BN map) inside the batch norm's own passes. Run it after both outputs' consumers have
    /// recorded their steps, as any tape op.
    public func convBatchNormPooled(_ parts: [(Variable, PaddedPlanes.Transform)], conv: Conv2D,
                                    _ bn: BatchNorm) -> (skip: Variable, pooled: Variable) {
        let (z, input, statistics) = convForward(parts, weight: conv.weight, bias: conv.bias, statistics: true)
        let (mean, invStd, scale, shift) = trainingStatistics(z, bn, batchStatistics: statistics)
        let s = z.shape
        let rectified = PaddedPlanes(n: s.n, channels: s.c, height: s.h, width: s.w)
        let pooledPlanes = PaddedPlanes(n: s.n, channels: s.c, height: s.h / 2, width: s.w / 2)
        BatchNormKernels.affine(z, scale: scale, shift: shift, rectifiedInto: rectified, pooledInto: pooledPlanes, pool: pool)
        let needs = parts.contains { $0.0.requiresGrad } || conv.weight.requiresGrad || conv.bias.requiresGrad
            || bn.gamma.requiresGrad || bn.beta.requiresGrad
        let skip = Variable(padded: rectified, requiresGrad: needs)
        let pooled = Variable(padded: pooledPlanes, requiresGrad: needs)
        if needs {
            let normalisation = BatchNormKernels.Normalisation(mean: mean, invStd: invStd, gamma: bn.gamma.value.array,
                                                               scale: scale, shift: shift)
            record { [unowned self] in  // steps run only inside this tape's backward()
                guard skip.grad != nil || pooled.grad != nil else { return }
                let dG = Tensor(bn.gamma.shape), dB = Tensor(bn.beta.shape)
                if parts.count == 1, parts[0].1 == .copy, input.low == nil, !parts[0].0.requiresGrad {
                    // The network's first stage: its input needs no gradient, so the weights'
                    // gradient comes from sums gathered in the batch norm's own pass.
                    let dW = Tensor(conv.weight.shape), dBias = Tensor(conv.bias.shape)
                    BatchNormKernels.backwardToWeights(x: z, rectifiedGradient: skip.grad, pooledGradient: pooled.grad, normalisation,
                                                       input: input.direct, dGamma: dG.data, dBeta: dB.data, dW: dW.data,
                                                       dB: dBias.data, pool: self.pool)
                    if conv.weight.requiresGrad { conv.weight.accumulate(dW) }
                    if conv.bias.requiresGrad { conv.bias.accumulate(dBias) }
                } else if let fused = self.fusedConvolutionBackward(parts, input: input, z: z, weight: conv.weight, bias: conv.bias) {
                    BatchNormKernels.backward(x: z, rectifiedGradient: skip.grad, pooledGradient: pooled.grad, normalisation,
                                              dGamma: dG.data, dBeta: dB.data, throughConvolution: fused.kernel, pool: self.pool)
                    fused.finish()
                } else {
                    let dz = PaddedPlanes(n: s.n, channels: s.c, height: s.h, width: s.w)
                    BatchNormKernels.backward(x: z, rectifiedGradient: skip.grad, pooledGradient: pooled.grad, normalisation,
                                              dGamma: dG.data, dBeta: dB.data, into: dz, pool: self.pool)
                    self.convBackward(parts, input: input, outputGradient: dz, weight: conv.weight, bias: conv.bias)
                }
                if bn.gamma.requiresGrad { bn.gamma.accumulate(dG) }
                if bn.beta.requiresGrad { bn.beta.accumulate(dB) }
            }
        }
        return (skip, pooled)
    }

    /// What a convolution keeps of its input for the backward pass: the padded planes of the
    /// parts laid out as they are and, for a decoder convolution whose last part is upsampled,
    /// that part's map before upsampling (the forward never lays out the upsampled map).
    struct ConvInput {
        let direct: PaddedPlanes
        let low: PaddedPlanes?
        var n: Int { direct.n }
        var height: Int { direct.height }
        var width: Int { direct.width }
    }

    /// The convolution's output and its input as kept for the weight gradient.
    func convForward(_ parts: [(Variable, PaddedPlanes.Transform)], weight: Variable, bias: Variable) -> (Tensor, ConvInput) {
        let (y, input, _) = convForward(parts, weight: weight, bias: bias, statistics: false)
        return (y, input)
    }

    /// The same, with the output's per-channel batch mean and variance when `statistics`.
    func convForward(_ parts: [(Variable, PaddedPlanes.Transform)], weight: Variable, bias: Variable,
                     statistics: Bool) -> (Tensor, ConvInput, (mean: [Float], variance: [Float])?) {
        let cout = weight.shape.n, cin = weight.shape.c
        let first = parts[0].0.shape
        let h = parts[0].1 == .upsample2x ? first.h * 2 : first.h, w = parts[0].1 == .upsample2x ? first.w * 2 : first.w
        let y = Tensor(Shape(first.n, cout, h, w), zeroed: false)
        if parts.count >= 2, parts.last!.1 == .upsample2x, !parts.dropLast().contains(where: { $0.1 == .upsample2x }) {
            // Decoder: the direct parts as padded planes, the upsampled one on its own map.
            let lowMap = parts.last!.0
            let cs = cin - lowMap.shape.c
            let direct = planes(Array(parts.dropLast()), height: h, width: w)
            let low = lowMap.padded ?? PaddedPlanes.from(lowMap.value, pool: pool)
            let stats = UpsampledConv3x3.forward(
                skip: direct, .init(oihw: weight.value.data, bias: bias.value.data, cout: cout, allInputs: cin, inputChannels: 0..<cs),
                low: low, .init(oihw: weight.value.data, cout: cout, allInputs: cin, inputChannels: cs..<cin),
                into: y, statistics: statistics, pool: pool)
            return (y, ConvInput(direct: direct, low: low), stats)
        }
        let padded = planes(parts, height: h, width: w)
        let packed = Conv3x3.PackedWeights(oihw: weight.value.data, bias: bias.value.data, cout: cout, cin: cin)
        if statistics { return (y, ConvInput(direct: padded, low: nil), Conv3x3.forwardWithStatistics(padded, packed, into: y, pool: pool)) }
        Conv3x3.forward(padded, packed, into: y, pool: pool)
        return (y, ConvInput(direct: padded, low: nil), nil)
    }

    /// The parts laid out as one convolution input: a single copied part that is already padded
    /// planes is used as it is.
    func planes(_ parts: [(Variable, PaddedPlanes.Transform)], height h: Int, width w: Int) -> PaddedPlanes {
        if parts.count == 1, parts[0].1 == .copy, let p = parts[0].0.padded { return p }
        let channels = parts.reduce(0) { $0 + $1.0.shape.c }
        let padded = PaddedPlanes(n: parts[0].0.shape.n, channels: channels, height: h, width: w)
        padded.fill(from: parts.map { PaddedPlanes.Source($0.0.value, $0.1) }, pool: pool)
        return padded
    }

    /// Input, weight and bias gradients of a convolution from its output gradient (padded).
    func convBackward(_ parts: [(Variable, PaddedPlanes.Transform)], input: ConvInput, outputGradient gp: PaddedPlanes,
                      weight: Variable, bias: Variable) {
        let cout = weight.shape.n, cin = weight.shape.c
        // A decoder convolution's upsampled part works on the output gradient's 2×2 box sums
        // (see UpsampledConv3x3.boxSums).
        let boxSums = input.low != nil ? UpsampledConv3x3.boxSums(gp, pool: pool) : nil
        // Each part's gradient comes from the weights of its own input channels, so a
        // concatenated input's gradient is never materialised and split.
        var offset = 0
        for (v, transform) in parts {
            let c = v.shape.c
            defer { offset += c }
            guard v.requiresGrad else { continue }
            if transform == .upsample2x, let boxSums {
                let dL = Tensor(v.shape, zeroed: false)
                UpsampledConv3x3.backwardData(boxSums: boxSums, .init(oihw: weight.value.data, cout: cout, allInputs: cin,
                                                                      inputChannels: offset..<(offset + c)),
                                              into: dL, pool: pool)
                v.accumulate(dL)
                continue
            }
            let dx = Tensor(Shape(input.n, c, input.height, input.width), zeroed: false)
            let weights = Conv3x3.PackedWeights.transposedFlipped(oihw: weight.value.data, cout: cout, cin: cin,
                                                                  inputChannels: offset..<(offset + c))
            switch transform {
            case .copy:
                Conv3x3.backwardData(gp, weights: weights, into: dx, pool: pool)
                v.accumulate(dx)
            case .relu:  // the ReLU's mask applied as the kernel stores the gradient
                Conv3x3.backwardData(gp, weights: weights, into: dx, reluInput: v.value, pool: pool)
                v.accumulate(dx)
            case .upsample2x:
                Conv3x3.backwardData(gp, weights: weights, into: dx, pool: pool)
                v.accumulate(PoolingKernels.upsample2xBackward(dy: dx, pool: pool))
            }
        }
        guard weight.requiresGrad || bias.requiresGrad else { return }
        let dW = Tensor(weight.shape), dB = Tensor(bias.shape)
        if let low = input.low, let boxSums {
            // The direct parts' weights from their planes, the upsampled part's from its map.
            let cs = input.direct.channels, cu = cin - cs
            let dWs = Tensor(Shape(cout, cs, 3, 3)), dWu = Tensor(Shape(cout, cu, 3, 3))
            Conv3x3.backwardWeights(x: input.direct, dY: gp, dW: dWs.data, dB: dB.data, pool: pool)
            UpsampledConv3x3.backwardWeights(low: low, boxSums: boxSums, dW: dWu.data, pool: pool)
            for o in 0..<cout {
                (dW.data + o * cin * 9).update(from: dWs.data + o * cs * 9, count: cs * 9)
                (dW.data + (o * cin + cs) * 9).update(from: dWu.data + o * cu * 9, count: cu * 9)
            }
        } else {
            Conv3x3.backwardWeights(x: input.direct, dY: gp, dW: dW.data, dB: dB.data, pool: pool)
        }
        if weight.requiresGrad { weight.accumulate(dW) }
        if bias.requiresGrad { bias.accumulate(dB) }
    }

    /// 1×1 convolution with bias. `weight` is (cout, cin, 1, 1).
    public func conv1x1(_ x: Variable, weight: Variable, bias: Variable) -> Variable {
        let cout = weight.shape.n
        let y = ChannelKernels.conv1x1(x.value, weights: weight.value.data, bias: bias.value.data, cout: cout, pool: pool)
        let out = output(y, x, weight, bias)
        if out.requiresGrad {
            record { [pool] in
                let dW = Tensor(weight.shape), dB = Tensor(bias.shape)
                if let lg = out.lossGradientAlone {  // a loss head: the logits' gradient is never laid out
                    let dx = ChannelKernels.conv1x1Backward(x: x.value, lossGradient: lg, weights: weight.value.data,
                                                            dW: dW.data, dB: dB.data, pool: pool)
                    if x.requiresGrad { x.accumulate(dx) }
                } else {
                    guard let g = out.grad else { return }
                    let dx = ChannelKernels.conv1x1Backward(x: x.value, dy: g, weights: weight.value.data,
                                                            dW: dW.data, dB: dB.data, pool: pool)
                    if x.requiresGrad { x.accumulate(dx) }
                }
                if weight.requiresGrad { weight.accumulate(dW) }
                if bias.requiresGrad { bias.accumulate(dB) }
            }
        }
        return out
    }

    /// An op with one input whose gradient is a function of the output gradient alone.
    private func unary(_ x: Variable, _ y: Tensor, backward: @escaping (Tensor) -> Tensor) -> Variable {
        let out = output(y, x)
        if out.requiresGrad {
            record {
                guard let g = out.grad else { return }
                x.accumulate(backward(g))
            }
        }
        return out
    }

    public func relu(_ x: Variable) -> Variable {
        unary(x, ElementwiseKernels.relu(x.value, pool: pool)) { [pool] g in
            ElementwiseKernels.reluBackward(x: x.value, dy: g, pool: pool)
        }
    }

    public func maxPool2x2(_ x: Variable) -> Variable {
        let out = output(PoolingKernels.maxPool2x2(x.value, pool: pool), x)
        if out.requiresGrad {
            record { [pool] in
                guard let g = out.grad else { return }
                // A U-Net's skip map already holds the decoder's gradient: add into it in place.
                if let existing = x.grad {
                    PoolingKernels.maxPool2x2Backward(x: x.value, dy: g, addingInto: existing, pool: pool)
                } else {
                    x.accumulate(PoolingKernels.maxPool2x2Backward(x: x.value, dy: g, pool: pool))
                }
            }
        }
        return out
    }

    public func upsample2x(_ x: Variable) -> Variable {
        unary(x, PoolingKernels.upsample2x(x.value, pool: pool)) { [pool] g in
            PoolingKernels.upsample2xBackward(dy: g, pool: pool)
        }
    }

    /// Channel concatenation, first part first.
    public func concat(_ parts: [Variable]) -> Variable {
        let out = Variable(ChannelKernels.concat(parts.map(\.value), pool: pool),
                           requiresGrad: parts.contains { $0.requiresGrad })
        if out.requiresGrad {
            record {
                guard let g = out.grad else { return }
                let grads = ChannelKernels.split(g, channels: parts.map { $0.shape.c })
                for (p, gp) in zip(parts, grads) where p.requiresGrad { p.accumulate(gp) }
            }
        }
        return out
    }

    /// Inverted dropout (Keras semantics): zeroes with probability `rate`, scales the rest by
    /// 1/(1−rate). Deterministic for a seed.
    public func dropout(_ x: Variable, rate: Float, seed: UInt64) -> Variable {
        if rate <= 0 { return x }
        // The same mask as `DropoutMask(rate:seed:)` inside `convBatchNorm`, here as a tensor.
        let mask = ElementwiseKernels.dropoutMask(x.shape, rate: rate, seed: seed, pool: pool)
        return unary(x, ElementwiseKernels.multiply(x.value, mask, pool: pool)) { [pool] g in
            ElementwiseKernels.multiply(g, mask, pool: pool)
        }
    }

    /// Batch normalisation. Training mode normalises with the batch statistics and updates the
    /// running averages (Keras: running = momentum · running + (1 − momentum) · batch, with the
    /// unbiased batch variance, as TensorFlow's fused batch norm does); inference mode uses the
    /// running statistics.
    public func batchNorm(_ x: Variable, _ bn: BatchNorm, training: Bool) -> Variable {
        batchNorm(x, bn, training: training, relu: false)
    }

    /// Batch norm followed by ReLU as one op: in training the ReLU's mask is recomputed from the
    /// input in the backward pass, so neither the BN output nor a separate ReLU pass is needed.
    public func batchNormReLU(_ x: Variable, _ bn: BatchNorm, training: Bool) -> Variable {
        training ? batchNorm(x, bn, training: true, relu: true) : relu(batchNorm(x, bn, training: false, relu: false))
    }

    func batchNorm(_ x: Variable, _ bn: BatchNorm, training: Bool, relu fuseReLU: Bool) -> Variable {
        let c = x.shape.c
        require(c == bn.channels, "batch norm has \(bn.channels) channels, input \(c)")
        let gamma = bn.gamma.value.array, beta = bn.beta.value.array
        if !training {
            var scale = [Float](repeating: 0, count: c), shift = scale
            for k in 0..<c {
                scale[k] = gamma[k] / (bn.runningVariance.data[k] + bn.epsilon).squareRoot()
                shift[k] = beta[k] - bn.runningMean.data[k] * scale[k]
            }
            let y = Tensor(x.shape, zeroed: false)
            BatchNormKernels.affine(x.value, scale: scale, shift: shift, into: y, pool: pool)
            let out = output(y, x, bn.gamma, bn.beta)
            if out.requiresGrad {
                record { [pool] in
                    guard let g = out.grad else { return }
                    // Running statistics are constants here: dx = g · scale; dγ = Σ g x̂; dβ = Σ g.
                    let dx = Tensor(x.shape, zeroed: false)
                    BatchNormKernels.affine(g, scale: scale, shift: [Float](repeating: 0, count: c), into: dx, pool: pool)
                    if x.requiresGrad { x.accumulate(dx) }
                    let dG = Tensor(bn.gamma.shape), dB = Tensor(bn.beta.shape)
                    let s = x.shape
                    for i in 0..<s.n {
                        for k in 0..<c {
                            let xp = x.value.plane(i, k), gp = g.plane(i, k)
                            let mu = bn.runningMean.data[k], inv = 1 / (bn.runningVariance.data[k] + bn.epsilon).squareRoot()
                            var a = Float(0), b = Float(0)
                            for p in 0..<s.plane { a += gp[p] * (xp[p] - mu) * inv; b += gp[p] }
                            dG.data[k] += a; dB.data[k] += b
                        }
                    }
                    if bn.gamma.requiresGrad { bn.gamma.accumulate(dG) }
                    if bn.beta.requiresGrad { bn.beta.accumulate(dB) }
                }
            }
            return out
        }
        let (mean, invStd, scale, shift) = trainingStatistics(x.value, bn)
        let y = Tensor(x.shape, zeroed: false)
        BatchNormKernels.affine(x.value, scale: scale, shift: shift, relu: fuseReLU, into: y, pool: pool)
        let out = output(y, x, bn.gamma, bn.beta)
        if out.requiresGrad {
            record { [pool] in
                guard let g = out.grad else { return }
                let dG = Tensor(bn.gamma.shape), dB = Tensor(bn.beta.shape)
                let dx = BatchNormKernels.backward(x: x.value, dy: g, .init(mean: mean, invStd: invStd, gamma: gamma,
                                                                            scale: scale, shift: shift),
                                                   reluAfter: fuseReLU, dGamma: dG.data, dBeta: dB.data, pool: pool)
                if x.requiresGrad { x.accumulate(dx) }
                if bn.gamma.requiresGrad { bn.gamma.accumulate(dG) }
                if bn.beta.requiresGrad { bn.beta.accumulate(dB) }
            }
        }
        return out
    }

    /// Softmax over channels (no gradient path: losses take logits and fuse the softmax).
    public func softmax(_ x: Variable) -> Variable {
        Variable(ChannelKernels.softmax(x.value, pool: pool))
    }
}

extension Tape {
    /// Σ x · weights as a scalar (summed in Double); used for gradient checks and weighted sums.
    public func weightedSum(_ x: Variable, _ weights: Tensor) -> Variable {
        require(x.value.count == weights.count, "\(x.shape) with \(weights.shape) weights")
        var s = 0.0
        for k in 0..<x.value.count { s += Double(x.value.data[k]) * Double(weights.data[k]) }
        let out = Variable(Tensor(Shape(1, 1, 1, 1), values: [Float(s)]), requiresGrad: x.requiresGrad)
        if out.requiresGrad {
            record {
                guard let g = out.grad else { return }
                let dx = Tensor(x.shape, zeroed: false)
                for k in 0..<dx.count { dx.data[k] = weights.data[k] * g.data[0] }
                x.accumulate(dx)
            }
        }
        return out
    }
}

extension Tape {
    /// Batch statistics of x for a training-mode batch norm, the folded (scale, shift), and the
    /// running-average update (Keras: running = momentum · running + (1 − momentum) · batch, with
    /// the unbiased batch variance, as TensorFlow's fused batch norm does).
    /// `batchStatistics`, when given, are x's mean and variance already gathered by the kernel
    /// that produced x.
    func trainingStatistics(_ x: Tensor, _ bn: BatchNorm, batchStatistics: (mean: [Float], variance: [Float])? = nil)
        -> (mean: [Float], invStd: [Float], scale: [Float], shift: [Float]) {
        let c = x.shape.c
        require(c == bn.channels, "batch norm has \(bn.channels) channels, input \(c)")
        let (mean, variance) = batchStatistics ?? BatchNormKernels.statistics(x, pool: pool)
        var invStd = [Float](repeating: 0, count: c), scale = invStd, shift = invStd
        for k in 0..<c {
            invStd[k] = 1 / (variance[k] + bn.epsilon).squareRoot()
            scale[k] = bn.gamma.value.data[k] * invStd[k]
            shift[k] = bn.beta.value.data[k] - mean[k] * scale[k]
        }
        let m = Float(x.shape.n * x.shape.plane)
        let unbiased: Float = m > 1 ? m / (m - 1) : 1
        for k in 0..<c {
            bn.runningMean.data[k] = bn.momentum * bn.runningMean.data[k] + (1 - bn.momentum) * mean[k]
            bn.runningVariance.data[k] = bn.momentum * bn.runningVariance.data[k] + (1 - bn.momentum) * variance[k] * unbiased
        }
        return (mean, invStd, scale, shift)
    }
}
