"""Writes ``generated_v2.jsonl``: the project's own generated training complaints.

Every sentence fragment below was written for envleads from the annotation guide (LABELS.md rules:
label what is reported as a problem, several media when several are reported, ``other`` for a
violation that names no medium, an empty list for consultations, jobs, subsidies, garbage-sorting
policy, property management, parking, traffic, signal, thanks). Nothing is taken from labelled
data. Places are invented. Output is deterministic for a given ``--seed``:

    .venv/bin/python models/training/make_generated.py [--seed 7] [--out PATH]

Kinds of rows: short single-medium complaints; two- and three-medium complaints (main concern
first); long letters that wrap the grievance in background, enforcement history and requests;
``other`` complaints (no approval, idle treatment equipment, faked monitoring, a polluting
enterprise in general terms); and non-environmental messages, many of which use environmental
words (an environmental bureau's jobs, garbage-sorting policy, a water bill) without a grievance.
"""
from __future__ import annotations

import argparse
import json
import os
import random
from typing import Dict, List, Sequence, Tuple

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "generated_v2.jsonl")

TOWNS = ["青石镇", "白沙镇", "龙泉镇", "梅林乡", "柳塘乡", "东湖街道", "南桥街道", "石门镇",
         "桃源镇", "金川乡", "新港街道", "高坪镇", "落雁乡", "北岭镇"]
PLACES = ["青石镇红星村三组", "白沙镇老街", "龙泉镇桃园村", "梅林乡杨家湾", "东湖街道幸福社区",
          "南桥街道锦绣花园小区", "石门镇工业园", "桃源镇河西村", "新港街道滨江路",
          "高坪镇中心小学旁", "落雁乡水口村", "北岭镇火车站附近", "开发区创业大道",
          "城南区建设路", "云溪县城关镇", "长岭县马坪乡", "江北区望江小区", "西城区人民路"]
ADDRESSEES = ["尊敬的领导：", "书记您好：", "局长您好，", "市长您好！", "各位领导：", "", "", "",
              "您好！", "县长：", "尊敬的环保局领导："]
SELF = ["我是附近的居民，", "我们是周边村民，", "本人住在附近，", "我是该小区业主，", "",
        "我们村民联名反映，", "我家就在旁边，"]
CLOSERS = ["请相关部门尽快处理。", "恳请领导重视！", "希望有关部门依法查处。", "盼回复。",
           "请环保部门来查一查。", "希望还我们一个安静干净的环境。", "多次投诉无果，望解决。",
           "", "", "请求取缔。", "希望早日得到解决，谢谢！"]
HISTORY = ["我们已经多次打电话投诉，每次来人看一看就走了，过几天照旧。",
           "环保局来查过一次，罚了款，没多久又恢复原样。",
           "村委会和镇政府都说管不了，互相推诿。",
           "去年就在平台反映过，至今没有结果。",
           "执法人员每次来之前对方都能提前得到消息。",
           "向12345反映后回复说已处理，但实际情况没有任何改变。"]
BACKGROUND = ["这里住着几百户居民，还有一所小学和一个幼儿园。",
              "我们村以前山清水秀，是有名的鱼米之乡。",
              "小区入住已经五年，周边配套一直不完善。",
              "该企业是前几年招商引资进来的，一直手续不全。",
              "这个问题已经持续两年多了，老人小孩受害最深。",
              "附近还有大片农田和一个饮用水水库。"]
HARM = ["严重影响周边居民的身体健康。", "大家苦不堪言。", "老人孩子都受不了。",
        "居民生活受到严重影响。", "村民意见很大。", "已经有人因此生病住院。"]

# label -> (sources, problems). A problem may hold {src}; sources are who causes it.
MEDIA: Dict[str, Tuple[Sequence[str], Sequence[str]]] = {
    "air": (["化工厂", "沥青搅拌站", "塑料厂", "烧烤店", "饭店", "铸造厂", "砖厂", "喷漆车间",
             "养猪场", "垃圾焚烧点", "混凝土搅拌站", "石料厂", "家具厂", "橡胶厂"],
            ["{src}排放的废气有刺鼻气味，窗户都不敢开", "{src}烟囱天天冒黑烟",
             "{src}的油烟直接排到居民楼，满屋都是油烟味", "{src}晚上偷偷排放有毒气体，臭味熏得人头晕",
             "{src}粉尘漫天飞，晾的衣服上全是灰", "{src}散发出阵阵恶臭，让人作呕",
             "有人在{src}旁边露天焚烧垃圾，浓烟滚滚", "{src}的异味一到晚上就特别重", "{src}的油烟直排到居民楼", "{src}的废气不经处理直排",
             "{src}油烟直排，整栋楼都是油烟味",
             "拉土车经过扬尘很大，路边房子全是灰", "{src}没有安装油烟净化器，油烟很大",
             "{src}的臭气飘到小区，夏天根本不能开窗", "{src}排出的气体呛得人咳嗽",
             "{src}生产时散发出一股烧塑料的味道", "{src}的锅炉烧煤，黑烟一阵一阵地冒",
             "{src}排放的烟尘把附近的菜叶都染黑了", "一到晚上{src}就开始排气，空气里全是化学品的味道",
             "{src}旁边的空气质量很差，大家出门都戴口罩", "{src}熬制东西的气味弥漫整个村子"]),
    "water": (["造纸厂", "养猪场", "洗砂场", "电镀厂", "屠宰场", "食品厂", "选矿厂", "洗车店",
               "印染厂", "小区", "农贸市场"],
              ["{src}的污水直接排进河里，河水又黑又臭", "{src}通过暗管偷排废水",
               "{src}把废水排到池塘，塘里的鱼都死了", "{src}的粪水流进水库，饮用水源被污染",
               "{src}的生活污水直排到水沟，污水横流", "{src}废水渗入地下，井水都不能喝了",
               "{src}的排污口在河边，下游河水发黑发臭", "{src}污水没有处理就排进灌溉渠",
               "河面上漂满了泡沫，水质越来越差", "{src}化粪池满了，脏水流得满街都是",
               "{src}把清洗设备的废水排进小溪，溪水变成了红色", "{src}的废水把水塘染得发绿发臭",
               "{src}旁边的水渠里全是黑水，村民不敢用来浇菜", "{src}的污水流进鱼塘，鱼大量死亡",
               "{src}的废液直接倒进下水道", "{src}下游的自来水有一股怪味"]),
    "noise": (["工地", "KTV", "酒吧", "加工厂", "搅拌站", "夜宵摊", "商铺", "石材加工棚",
               "广场舞队", "装修公司", "木材加工厂"],
              ["{src}夜间施工，噪音太大，根本睡不着", "{src}音响开得震天响，严重扰民",
               "{src}机器轰鸣到凌晨，吵得孩子无法入睡", "{src}的大喇叭从早放到晚",
               "{src}切割机声音刺耳，从早吵到晚", "{src}通宵营业，喧哗声不断",
               "{src}的鼓风机一直响到半夜", "半夜还有{src}在打桩，震得窗户都响",
               "{src}的冷却塔噪声很大，晚上无法休息",
               "{src}的空压机白天黑夜响个不停", "{src}半夜装卸货物，哐当声把人吵醒",
               "{src}的喧闹声一直持续到凌晨两三点", "{src}的噪声超过了国家标准，居民无法正常生活",
               "{src}每天早上五点就开工，电锯声不断",
               "{src}的空调外机和排风扇嗡嗡响，吵得人心烦"]),
    "solid_waste": (["工地", "装修公司", "渣土车", "物业", "废品收购站", "医院", "工厂",
                     "农贸市场", "垃圾站"],
                    ["{src}把建筑垃圾倒在村口空地上", "{src}乱倒渣土，堆成了小山",
                     "{src}的生活垃圾长期没人清运，堆积如山", "有人在河边倾倒大量工业废渣",
                     "{src}把医疗废物混在生活垃圾里扔", "{src}偷偷填埋危险废物",
                     "{src}在路边乱堆废料，越堆越多", "垃圾桶满了也没人管，垃圾扔得满地都是",
                     "{src}把装修垃圾堆在楼道里", "山沟里被人偷倒了几十车垃圾",
                     "{src}的渣土车一路遗撒，路面上全是泥土", "{src}把废旧轮胎和废塑料堆在空地上",
                     "{src}的垃圾堆放点离住户不到十米，蚊蝇乱飞", "{src}把炉渣和粉煤灰倒在路边",
                     "{src}清理出来的污泥随意堆放在河堤上", "{src}的废机油和油桶随处乱扔",
                     "{src}把废渣堆在田边，越堆越高"]),
    "soil": (["冶炼厂", "电镀厂", "化工厂", "尾矿库", "选矿厂", "污泥处理厂"],
             ["{src}周边的农田被污染，庄稼连年减产", "{src}附近的土壤重金属超标",
              "{src}的废水流进稻田，田里颗粒无收", "{src}把污泥撒在地里，菜地都种不了东西",
              "{src}旁边的耕地寸草不生", "检测发现{src}附近的稻米镉超标",
              "{src}搬走后留下的污染地块没有修复就要开发建房",
              "{src}的含重金属废渣堆在田边，周围的土地都变了颜色",
              "{src}周边的果树和农作物大面积枯死", "{src}附近种出来的蔬菜检测出铅超标",
              "{src}的废水灌进农田，土地板结不能耕种"]),
    "radiation": (["移动基站", "变电站", "高压线", "信号发射塔", "配电房", "雷达站"],
                  ["小区楼顶装了{src}，担心辐射影响健康", "{src}离住户太近，辐射是否超标",
                   "我家窗户对面就是{src}，电磁辐射让人担心", "学校旁边要建{src}，家长都很担心辐射",
                   "{src}从房顶经过，晚上能听到滋滋声，担心电磁辐射",
                   "村里新建{src}，没有做辐射检测"]),
    "ecological": (["采砂船", "采石场", "矿老板", "开发商", "村干部", "外地老板"],
                   ["{src}在河道里非法采砂，河床都被挖空了", "{src}乱砍滥伐，山上的树被砍光了",
                    "{src}开山炸石，整座山被挖得千疮百孔", "有人在水库里电鱼，鱼苗都被电死了",
                    "{src}填湖造地，湿地越来越少", "有人在保护区里捕杀候鸟",
                    "{src}毁林开矿，水土流失很严重", "{src}在公益林里修路，大片植被被破坏",
                    "{src}盗采稀土，青山变成了黄土坡",
                    "{src}在河滩上挖沙，河堤都被挖垮了", "{src}在湿地里建养殖场，破坏了鸟类栖息地",
                    "有人用网捕捉野生鸟类拿去卖", "{src}把几百年的古树挖走卖钱",
                    "{src}无证开采矿石，山体被破坏得满目疮痍", "{src}在禁渔期用密网捕捞",
                    "{src}开采石场，整片山林被推平",
                    "{src}侵占林地建厂房，几百棵树被毁"]),
}
OTHER_PROBLEMS = [
    "{src}没有环评手续就开工建设", "{src}未批先建，环保部门也不管",
    "{src}环保验收没通过就投入生产", "{src}的环保设施是摆设，从来不运行",
    "{src}的治污设备平时闲置，检查时才开", "{src}篡改在线监测数据",
    "{src}的环评报告造假，群众根本没有参与调查", "{src}严重污染环境，却一直没人查处",
    "{src}被关停后又死灰复燃，继续违法生产", "{src}没有任何手续，非法生产多年，污染很严重",
    "{src}是散乱污企业，整治了又开工", "{src}没有排污许可证照样生产",
    "{src}的环评批的是一条生产线，实际建了三条", "{src}的污染防治设施一直停运",
    "{src}造成严重的环境污染，村民怨声载道", "{src}污染环境，群众多次举报都没有处理",
    "{src}手续不全就开工生产，对环境造成很大损害", "{src}没有验收就偷偷投产",
    "{src}楼顶的LED大屏晚上强光直射卧室，光污染严重",
    "{src}门口的射灯整夜开着，光污染让人无法休息",
]
OTHER_SOURCES = ["小作坊", "砖厂", "洗金场", "炼油厂", "泡沫厂", "冶炼厂", "塑料颗粒厂",
                 "化工企业", "再生资源公司", "机砖厂"]

NOT_ENVIRONMENTAL = [
    "请问环保局今年招聘的事业编岗位什么时候报名？", "咨询环境监测站的工作人员待遇问题。",
    "我是环保局的合同工，工资已经拖欠三个月了。", "请问生态环境局的公务员考试成绩什么时候公布？",
    "想咨询一下垃圾分类的具体标准，厨余垃圾要不要去掉包装？",
    "小区什么时候开始推行垃圾分类？分类垃圾桶由谁配置？", "垃圾分类积分可以兑换什么东西？",
    "请问新能源汽车购置补贴政策还有吗？", "咨询一下农村改厕的补助标准。",
    "请问环保税怎么申报？", "咨询节能家电补贴如何申请。", "建议增设一条通往工业园的公交线路。",
    "小区停车位被外来车辆长期占用，物业不管。", "物业费年年涨，服务却越来越差。",
    "开发商延期交房快一年了，房产证也办不下来。", "地下车库的车位只租不售，合理吗？",
    "小区手机信号很差，打电话经常断线。", "家里的宽带经常断网，客服一直不处理。",
    "上下班高峰期这个路口堵车非常严重，建议增设红绿灯。",
    "感谢环保局的工作人员，上次反映的问题已经解决了。", "对上次的答复表示满意，谢谢。",
    "表扬社区的网格员，帮我们解决了很多困难。", "孩子入学需要哪些材料？",
    "社保卡丢了怎么补办？", "公积金贷款额度是怎么计算的？", "拆迁补偿款一直没有发放到位。",
    "家里水表漏水，自来水公司说不归他们管。", "这个月的水费比平时多了好几倍，是不是水表坏了？",
    "小区停水三天了，也没有任何通知。", "冬天暖气不热，物业说是热力公司的问题。",
    "网购遇到诈骗，报警后一直没有结果。", "村里的低保评定不公平。",
    "老旧小区改造什么时候轮到我们小区？", "请问办理排污许可证需要准备哪些材料？",
    "企业环评报告审批需要多长时间？收费标准是多少？", "请问在小区里养鸡鸭是否违法？",
    "医院挂号太难了，建议增加网上挂号名额。", "村里的道路硬化工程什么时候动工？",
    "小区绿化带被业主私自种菜，物业也不制止。", "我们楼下的路灯坏了半年没人修。",
    "村干部在工程中贪污，请求调查。", "请问在农村建房需要办理什么手续？",
    "请问环保局的办公地址和电话是多少？", "请问如何举报企业偷税漏税？",
]
NOT_ENV_TITLES = ["咨询", "建议", "关于招聘的问题", "请求帮助", "关于物业的问题", "", "", ""]

TITLES = {
    "air": ["投诉废气污染", "关于油烟扰民的问题", "臭气熏天谁来管", "举报企业排放废气"],
    "water": ["投诉偷排污水", "河流被污染", "饮用水源受到污染", "关于污水横流的问题"],
    "noise": ["噪音扰民", "投诉夜间施工", "请求治理噪声污染", "晚上吵得无法休息"],
    "solid_waste": ["举报倾倒建筑垃圾", "垃圾无人清运", "渣土乱倒问题", "反映固废堆放问题"],
    "soil": ["关于耕地污染的问题", "农田被污染", "土壤重金属超标"],
    "radiation": ["反对建设变电站", "担心基站辐射", "高压线离住户太近"],
    "ecological": ["举报非法采砂", "山林被毁", "请求制止乱砍滥伐", "破坏生态的举报"],
    "other": ["举报企业未批先建", "环保设施形同虚设", "举报非法生产企业", "企业污染环境无人管"],
}


class _Writer:
    def __init__(self, seed: int):
        self.random = random.Random(seed)
        self.rows: List[dict] = []

    def pick(self, items):
        return self.random.choice(list(items))

    def problem(self, label: str) -> str:
        if label == "other":
            return self.pick(OTHER_PROBLEMS).format(src=self.pick(OTHER_SOURCES))
        sources, problems = MEDIA[label]
        return self.pick(problems).format(src=self.pick(sources))

    def title(self, labels: Sequence[str]) -> str:
        if not labels or self.random.random() < 0.5:
            return ""
        return self.pick(TITLES[labels[0]])

    def add(self, text: str, labels: Sequence[str], title: str = "") -> None:
        self.rows.append({"id": f"gen2-{len(self.rows):05d}", "title": title, "text": text,
                          "labels": list(labels), "synthetic": True})

    def short(self, labels: Sequence[str]) -> None:
        body = "，".join(self.problem(label) for label in labels)
        text = (self.pick(ADDRESSEES) + self.pick(SELF) + self.pick(PLACES) + body + "。"
                + (self.pick(HARM) if self.random.random() < 0.5 else "") + self.pick(CLOSERS))
        self.add(text, labels, self.title(labels))

    def letter(self, labels: Sequence[str]) -> None:
        parts = [self.pick(ADDRESSEES), self.pick(SELF) + self.pick(PLACES) + "的情况如下。",
                 self.pick(BACKGROUND)]
        for number, label in enumerate(labels, 1):
            parts.append(f"{number}、{self.problem(label)}，{self.pick(HARM)}")
        parts.append(self.pick(HISTORY))
        parts.append(self.pick(CLOSERS) or "请领导督促解决。")
        self.add("".join(parts), labels, self.title(labels))

    def not_environmental(self) -> None:
        text = self.pick(ADDRESSEES) + self.pick(NOT_ENVIRONMENTAL)
        if self.random.random() < 0.3:
            text += self.pick(["谢谢！", "盼回复。", "希望尽快答复。"])
        self.add(text, [], self.pick(NOT_ENV_TITLES))

    def not_environmental_letter(self) -> None:
        first, second = self.random.sample(NOT_ENVIRONMENTAL, 2)
        text = (self.pick(ADDRESSEES) + self.pick(SELF) + self.pick(PLACES) + "有两件事想反映。"
                + "一是" + first + "二是" + second + self.pick(["盼回复。", "谢谢！", ""]))
        self.add(text, [], self.pick(NOT_ENV_TITLES))


def generate(seed: int = 7) -> List[dict]:
    """The generated rows, in a fixed order for ``seed``."""
    writer = _Writer(seed)
    labels = list(MEDIA) + ["other"]
    for label in labels:
        for _ in range(45):
            writer.short([label])
        for _ in range(20):
            writer.letter([label])
    for _ in range(260):
        count = 2 if writer.random.random() < 0.75 else 3
        chosen = writer.random.sample(labels, count)
        (writer.short if writer.random.random() < 0.5 else writer.letter)(chosen)
    for _ in range(280):
        writer.not_environmental()
    for _ in range(80):
        writer.not_environmental_letter()
    return writer.rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    rows = generate(args.seed)
    with open(args.out, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
