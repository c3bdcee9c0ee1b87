import Foundation
import NanoHDF5
import NanoTensor

/// Imports Keras-2 HDF5 weight files (`model.save_weights`), such as the published pyNanoFind
/// models. The root attribute `layer_names` gives the layer order; each layer group's
/// `weight_names` lists its datasets (conv: kernel HWIO, bias; BN: gamma, beta, moving_mean,
/// moving_variance). The weighted layers map one-to-one, in order, onto the U-Net's weighted
/// layers; the architecture is inferred from the kernel shapes and every shape is checked.
public enum KerasWeights {
    struct Layer { var name: String; var arrays: [(String, [Int], [Float])] }

    public static func load(_ url: URL) throws -> Model {
        func fail(_ r: String) -> ModelFileError { ModelFileError(file: url.path, reason: r) }
        let layers: [Layer]
        do { layers = try readLayers(url) } catch let e as HDF5Error { throw fail(e.reason) }
        let convs = layers.filter { $0.arrays.count == 2 }
        let norms = layers.filter { $0.arrays.count == 4 }
        guard convs.count >= 6, (convs.count - 3) % 3 == 0, norms.count == convs.count - 1 else {
            throw fail("not a pyNanoFind-style U-Net: \(convs.count) convolutions and \(norms.count) batch norms")
        }
        let depth = (convs.count - 3) / 3
        func kernelShape(_ l: Layer) throws -> [Int] {
            let s = l.arrays[0].1
            guard s.count == 4 else { throw fail("layer \(l.name): kernel has shape \(s), expected (kh, kw, cin, cout)") }
            return s
        }
        var widths: [Int] = []
        for k in 0..<depth { widths.append(try kernelShape(convs[k])[3]) }
        let first = try kernelShape(convs[0]), centre = try kernelShape(convs[depth])[3]
        let head = try kernelShape(convs[convs.count - 1])
        let config = UNetConfig(widths: widths, centreWidth: centre, inputChannels: first[2], classes: head[3])
        if let problem = config.problem { throw fail("the kernel shapes describe an impossible network: \(problem)") }
        let net = UNet(config: config)
        let expected = net.plan.weightedLayerNames.count
        guard expected == layers.count else {
            throw fail("\(layers.count) weighted layers, the inferred network has \(expected)")
        }
        // Keras' order is the plan's: each convolution, then its batch norm.
        var remaining = layers[...]
        for c in net.plan.convolutions {
            let l = remaining.removeFirst()
            try loadConvolution(l, into: net.layer(c), name: c.name, fail: fail)
            guard let normName = c.normName else { continue }
            try loadBatchNorm(remaining.removeFirst(), into: net.norm(c), name: normName, fail: fail)
        }
        let meta = ModelMetadata(config: config, threshold: 0.5, trainingPixelSizeNm: nil, preprocessing: .pyNanoFind,
                                 provenance: "Keras HDF5 weights \(url.lastPathComponent)")
        return Model(network: net, metadata: meta)
    }

    static func loadConvolution(_ l: Layer, into cv: Conv2D, name: String, fail: (String) -> ModelFileError) throws {
        guard l.arrays.count == 2 else { throw fail("layer \(l.name) should be a convolution (for \(name))") }
        let (_, ks, kv) = l.arrays[0], (_, bs, bv) = l.arrays[1]
        let k = cv.kernel
        guard ks == [k, k, cv.cin, cv.cout] else {
            throw fail("layer \(l.name) kernel has shape \(ks), expected \([k, k, cv.cin, cv.cout]) for \(name)")
        }
        guard bs == [cv.cout] else { throw fail("layer \(l.name) bias has shape \(bs), expected [\(cv.cout)]") }
        // HWIO → OIHW
        for ky in 0..<k { for kx in 0..<k { for c in 0..<cv.cin { for o in 0..<cv.cout {
            cv.weight.value.data[((o * cv.cin + c) * k + ky) * k + kx] = kv[((ky * k + kx) * cv.cin + c) * cv.cout + o]
        } } } }
        for o in 0..<cv.cout { cv.bias.value.data[o] = bv[o] }
    }

    static func loadBatchNorm(_ l: Layer, into bn: BatchNorm, name: String, fail: (String) -> ModelFileError) throws {
        guard l.arrays.count == 4 else { throw fail("layer \(l.name) should be a batch norm (for \(name))") }
        let targets = [bn.gamma.value, bn.beta.value, bn.runningMean, bn.runningVariance]
        for ((vname, s, v), t) in zip(l.arrays, targets) {
            guard s == [bn.channels] else { throw fail("layer \(l.name) \(vname) has shape \(s), expected [\(bn.channels)]") }
            for c in 0..<bn.channels { t.data[c] = v[c] }
        }
        guard (0..<bn.channels).allSatisfy({ bn.runningVariance.data[$0] >= 0 }) else {
            throw fail("layer \(l.name) has a negative moving variance")
        }
    }

    /// Reads every weighted layer in `layer_names` order with its arrays in `weight_names` order.
    static func readLayers(_ url: URL) throws -> [Layer] {
        let file = try HDF5File(path: url.path)
        let root = file.root
        let groupForWeights: HDF5Group
        if root.hasGroup("model_weights") { groupForWeights = try root.group("model_weights") } else { groupForWeights = root }
        guard let namesAttr = try groupForWeights.attribute("layer_names"), let names = try namesAttr.read().strings else {
            throw HDF5Error(file: url.path, reason: "not a Keras weight file (no layer_names attribute)")
        }
        guard names.count < 10_000 else { throw HDF5Error(file: url.path, reason: "implausible layer count \(names.count)") }
        var layers: [Layer] = []
        var valuesRead = 0
        for name in names {
            let g = try groupForWeights.group(name)
            guard let wn = try g.attribute("weight_names") else {
                throw HDF5Error(file: url.path, reason: "layer \(name.debugDescription) has no weight_names attribute")
            }
            let weightNames = try wn.read().strings ?? []  // layers without weights store an empty float array
            if weightNames.isEmpty { continue }
            var arrays: [(String, [Int], [Float])] = []
            for w in weightNames {
                var grp = g
                let parts = w.split(separator: "/").map(String.init)
                for p in parts.dropLast() { grp = try grp.group(p) }
                let ds = try grp.dataset(parts.last ?? w)
                let info = try ds.info()
                guard info.count <= 10_000_000, valuesRead + info.count <= 50_000_000 else {
                    throw HDF5Error(file: url.path, reason: "dataset \(name)/\(w) is implausibly large \(info.shape)")
                }
                valuesRead += info.count
                arrays.append((w, info.shape, try ds.readFloats()))
            }
            layers.append(Layer(name: name, arrays: arrays))
        }
        return layers
    }
}
