import NanoNet
import NanoTensor
import TestSupport
import XCTest

/// The plan is the one description of the network: names, order, counts and receptive field.
final class UNetPlanTests: XCTestCase {
    func testPyNanoFindPlanHasThePublishedLayersInKerasOrder() {
        let plan = UNetPlan(.pyNanoFind)
        XCTAssertEqual(plan.convolutions.map(\.name), [
            "down1_conv", "down2_conv", "down3_conv", "down4_conv", "center1_conv", "center2_conv",
            "up4_conv1", "up4_conv2", "up3_conv1", "up3_conv2", "up2_conv1", "up2_conv2", "up1_conv1", "up1_conv2", "final_conv"])
        XCTAssertEqual(plan.weightedLayerNames.count, 29)
        XCTAssertEqual(Array(plan.weightedLayerNames.prefix(3)), ["down1_conv", "down1_bn", "down2_conv"])
        XCTAssertEqual(plan.decoders[3].first.cin, 64)
        XCTAssertEqual(plan.decoders[3].first.upsampledInputs, 32)
        XCTAssertEqual(plan.decoders[0].first.cin, 12)
        XCTAssertEqual(plan.decoders[0].second.trainingOp, .convBatchNormHead)
        XCTAssertEqual(plan.encoders.map(\.scaleDivisor), [1, 2, 4, 8])
        XCTAssertEqual(plan.centre.map(\.scaleDivisor), [16, 16])
        XCTAssertEqual(plan.alignment, 16)
        // Hand count: encoder reach 1+2+4+8 = 15, centre +32 = 47, each decoder level adds the
        // upsampling (s) and two convolutions (2s): 47 + 3·(8+4+2+1) = 92.
        XCTAssertEqual(plan.receptiveRadius, 92)
        XCTAssertEqual(plan.tileMargin, 96)
    }

    func testParameterCountsAgreeWithTheAllocatedNetwork() {
        for config in [UNetConfig.pyNanoFind, UNetConfig(widths: [3], centreWidth: 5),
                       UNetConfig(widths: [2, 3, 5, 7, 9], centreWidth: 11, inputChannels: 2, classes: 3)] {
            let net = UNet(config: config)
            XCTAssertEqual(config.parameterCount, net.parameterCount, "\(config.widths)")
            XCTAssertEqual(net.namedTensors.count, 2 * plan(config).convolutions.count + 4 * (plan(config).convolutions.count - 1))
        }
        XCTAssertEqual(UNetConfig.pyNanoFind.parameterCount, 65_490)  // fixtures README: 65,002 trainable + 488 moving statistics
        XCTAssertNil(UNetConfig(widths: [Int.max]).parameterCount)
    }

    func plan(_ c: UNetConfig) -> UNetPlan { UNetPlan(c) }

    /// The FLOP counts `bench` divides by, against a hand count of the pyNanoFind layers at 512²
    /// (cin, cout, side; kernel 3 but the 1×1 head; decoders' first convolutions take the skip
    /// plus the map before upsampling).
    func testFlopCountsMatchAHandCountOfThePyNanoFindLayers() {
        let net = UNet(config: .pyNanoFind)
        // (direct inputs, upsampled inputs, outputs, side, kernel) of every convolution.
        let layers: [(Double, Double, Double, Double, Double)] = [
            (1, 0, 4, 512, 3), (4, 0, 8, 256, 3), (8, 0, 16, 128, 3), (16, 0, 32, 64, 3), (32, 0, 32, 32, 3), (32, 0, 32, 32, 3),
            (32, 32, 32, 64, 3), (32, 0, 32, 64, 3), (16, 32, 16, 128, 3), (16, 0, 16, 128, 3),
            (8, 16, 8, 256, 3), (8, 0, 8, 256, 3), (4, 8, 4, 512, 3), (4, 0, 4, 512, 3), (4, 0, 2, 512, 1)]
        var nominal = 0.0, forward = 0.0, training = 0.0
        for (k, (cd, cu, cout, side, kernel)) in layers.enumerated() {
            let pixels = side * side, k2 = kernel * kernel
            nominal += 2 * k2 * (cd + cu) * cout * pixels
            // Executed: the upsampled part's forward 4 multiply-adds per output pixel (16 per
            // low-resolution pixel), its input and weight gradients 9 per low-resolution pixel.
            let f = 2 * (k2 * cd + 4 * cu) * cout * pixels
            let backward = 2 * (k2 * cd + 2.25 * cu) * cout * pixels
            forward += f
            training += f + (k == 0 ? 0 : backward) + backward
        }
        XCTAssertEqual(nominal, 1_306_525_696)  // the 1.307 GFLOP the bench's help quotes
        XCTAssertEqual(net.forwardFlops(height: 512, width: 512), nominal)
        XCTAssertEqual(net.executedForwardFlops(height: 512, width: 512), forward)
        XCTAssertEqual(net.executedTrainingFlops(height: 512, width: 512), training)
        XCTAssertLessThan(forward, nominal)
    }

    /// The receptive radius is an upper bound (no output further away changes when one input
    /// pixel does) and a tight one (some output at nearly that distance does change).
    func testReceptiveRadiusBoundsTheReachOfOneInputPixel() {
        for config in [UNetConfig(widths: [2, 3], centreWidth: 4), UNetConfig(widths: [2, 2, 3], centreWidth: 3)] {
            let net = UNet(config: config, seed: 4)
            randomiseNorms(net)
            let engine = UNetInference(net)
            let r = net.plan.receptiveRadius
            let side = 2 * r + 2 * net.plan.alignment + 16 - (2 * r) % 16
            var rng = SplitMix64(seed: 8)
            let x = Tensor.randomNormal(Shape(1, 1, side, side), rng: &rng)
            let before = engine.logits(x)
            let cx = side / 2, cy = side / 2
            x[0, 0, cy, cx] += 50
            let after = engine.logits(x)
            var reach = 0
            for y in 0..<side { for xx in 0..<side where abs(after[0, 1, y, xx] - before[0, 1, y, xx]) > 1e-6 {
                reach = max(reach, abs(y - cy), abs(xx - cx))
            } }
            XCTAssertLessThanOrEqual(reach, r, "\(config.widths): an input pixel moved an output \(reach) px away, radius \(r)")
            XCTAssertGreaterThanOrEqual(reach, r - net.plan.alignment, "\(config.widths): radius \(r) is loose (reach \(reach))")
        }
    }

    /// A window of the image whose origin is on the pooling grid gives exactly the whole-image
    /// values wherever it keeps `tileMargin` pixels of context (at the image's own edges none is
    /// needed: there the window's zero padding is the image's).
    func testAWindowWithTheTileMarginReproducesTheWholeImage() {
        let config = UNetConfig(widths: [2, 3], centreWidth: 4)
        let net = UNet(config: config, seed: 6)
        randomiseNorms(net)
        let engine = UNetInference(net)
        let m = net.plan.tileMargin, a = net.plan.alignment
        let w = 4 * m + 3 * a, h = 3 * m + 2 * a
        var rng = SplitMix64(seed: 1)
        let x = Tensor.randomNormal(Shape(1, 1, h, w), rng: &rng)
        let whole = engine.probabilities(x)
        // An interior window: keep its core (margin m on every side).
        let x0 = a, y0 = 0, ww = w - 2 * a, wh = 2 * m + 2 * a
        let window = Tensor(Shape(1, 1, wh, ww))
        for y in 0..<wh { for xx in 0..<ww { window[0, 0, y, xx] = x[0, 0, y0 + y, x0 + xx] } }
        let part = engine.probabilities(window)
        var worst: Float = 0
        for y in 0..<(wh - m) { for xx in m..<(ww - m) {  // top edge is the image's own edge
            worst = worse(worst, abs(part[0, 1, y, xx] - whole[0, 1, y0 + y, x0 + xx]))
        } }
        XCTAssertLessThan(worst, 1e-5, "window core differs from the whole image by \(worst)")
        // and a margin that is too small does differ (the test can fail)
        var outside: Float = 0
        for y in (wh - m / 2)..<wh { for xx in m..<(ww - m) {
            outside = max(outside, abs(part[0, 1, y, xx] - whole[0, 1, y0 + y, x0 + xx]))
        } }
        XCTAssertGreaterThan(outside, 1e-4, "pixels nearer than the margin to a cut should differ")
    }

    func randomiseNorms(_ net: UNet) {
        var rng = SplitMix64(seed: 12)
        for (_, t) in net.namedTensors { for k in 0..<t.count { t.data[k] += 0.1 * rng.nextGaussian() } }
        for bn in net.layerNorms.compactMap({ $0 }) { for k in 0..<bn.channels { bn.runningVariance.data[k] = 0.5 + rng.nextFloat() } }
    }
}
