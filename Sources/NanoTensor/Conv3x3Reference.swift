/// Plain, obviously-correct twins of the fast 3×3 kernels (and the 1×1 conv), used by the tests
/// to check the fast ones on random shapes. Loops over unpadded NCHW tensors, summing in Double.
public enum Conv3x3Reference {
    public static func forward(_ x: Tensor, weights w: [Float], bias b: [Float]?, cout: Int) -> Tensor {
        let s = x.shape
        let out = Tensor(Shape(s.n, cout, s.h, s.w))
        for i in 0..<s.n {
            for o in 0..<cout {
                for y in 0..<s.h {
                    for xx in 0..<s.w {
                        var acc = Double(b?[o] ?? 0)
                        for c in 0..<s.c {
                            for ky in 0..<3 {
                                let yy = y + ky - 1
                                if yy < 0 || yy >= s.h { continue }
                                for kx in 0..<3 {
                                    let xs = xx + kx - 1
                                    if xs < 0 || xs >= s.w { continue }
                                    acc += Double(x[i, c, yy, xs]) * Double(w[((o * s.c + c) * 3 + ky) * 3 + kx])
                                }
                            }
                        }
                        out[i, o, y, xx] = Float(acc)
                    }
                }
            }
        }
        return out
    }

    /// dX for y = conv(x, w): dX[c](y, x) = Σ_o Σ_k dY[o](y-ky+1, x-kx+1) · w[o][c][k].
    public static func backwardData(_ dY: Tensor, weights w: [Float], cin: Int) -> Tensor {
        let s = dY.shape
        let dx = Tensor(Shape(s.n, cin, s.h, s.w))
        for i in 0..<s.n {
            for c in 0..<cin {
                for y in 0..<s.h {
                    for xx in 0..<s.w {
                        var acc = 0.0
                        for o in 0..<s.c {
                            for ky in 0..<3 {
                                let yy = y - ky + 1
                                if yy < 0 || yy >= s.h { continue }
                                for kx in 0..<3 {
                                    let xs = xx - kx + 1
                                    if xs < 0 || xs >= s.w { continue }
                                    acc += Double(dY[i, o, yy, xs]) * Double(w[((o * cin + c) * 3 + ky) * 3 + kx])
                                }
                            }
                        }
                        dx[i, c, y, xx] = Float(acc)
                    }
                }
            }
        }
        return dx
    }

    /// dW (OIHW) and dB for y = conv(x, w).
    public static func backwardWeights(x: Tensor, dY: Tensor) -> (dW: [Float], dB: [Float]) {
        let s = x.shape, cout = dY.shape.c
        var dW = [Float](repeating: 0, count: cout * s.c * 9)
        var dB = [Float](repeating: 0, count: cout)
        for o in 0..<cout {
            var bacc = 0.0
            for i in 0..<s.n { for y in 0..<s.h { for xx in 0..<s.w { bacc += Double(dY[i, o, y, xx]) } } }
            dB[o] = Float(bacc)
            for c in 0..<s.c {
                for ky in 0..<3 {
                    for kx in 0..<3 {
                        var acc = 0.0
                        for i in 0..<s.n {
                            for y in 0..<s.h {
                                let yy = y + ky - 1
                                if yy < 0 || yy >= s.h { continue }
                                for xx in 0..<s.w {
                                    let xs = xx + kx - 1
                                    if xs < 0 || xs >= s.w { continue }
                                    acc += Double(dY[i, o, y, xx]) * Double(x[i, c, yy, xs])
                                }
                            }
                        }
                        dW[((o * s.c + c) * 3 + ky) * 3 + kx] = Float(acc)
                    }
                }
            }
        }
        return (dW, dB)
    }

    /// 1×1 convolution: out[o] = b[o] + Σ_c w[o][c] · x[c].
    public static func conv1x1(_ x: Tensor, weights w: [Float], bias b: [Float]?, cout: Int) -> Tensor {
        let s = x.shape
        let out = Tensor(Shape(s.n, cout, s.h, s.w))
        for i in 0..<s.n { for o in 0..<cout { for p in 0..<s.plane {
            var acc = Double(b?[o] ?? 0)
            for c in 0..<s.c { acc += Double(w[o * s.c + c]) * Double(x.plane(i, c)[p]) }
            out.plane(i, o)[p] = Float(acc)
        } } }
        return out
    }
}
